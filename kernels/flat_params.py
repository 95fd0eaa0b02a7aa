"""Many same-dtype tensors living in one contiguous buffer, so one kernel launch can update them all.

Layout: a 1-D contiguous ``buffer``; tensor i is the view ``views[i]`` starting at element
``offsets[i]``, which is a multiple of ``ALIGN_BYTES`` bytes so every view is as aligned as a
fresh allocation (vectorised loads and cuDNN/cuBLAS like that). Gaps between views hold zeros.
A view keeps its tensor's strides when they are dense (e.g. channels_last conv weights), else
it is plain contiguous. Two ``FlatParams`` packed from same-shaped tensors share a layout, so an
elementwise update of one buffer from the other (the EMA) touches matching elements.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ALIGN_BYTES", "FlatParams", "ViewLayout"]

ALIGN_BYTES = 64


@dataclass(frozen=True)
class ViewLayout:
    """Where one tensor lives in the flat buffer."""

    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class FlatParams:
    """One flat buffer plus a view per packed tensor; build with :meth:`pack` or :meth:`pack_parameters`."""

    def __init__(self, buffer: Tensor, layout: Sequence[ViewLayout]) -> None:
        if buffer.dim() != 1 or not buffer.is_contiguous():
            raise ValueError(f"FlatParams needs a 1-D contiguous buffer, got shape {tuple(buffer.shape)}")
        self.buffer = buffer
        self.layout = tuple(layout)
        self.views = tuple(buffer.as_strided(v.shape, v.stride, v.offset) for v in self.layout)

    @classmethod
    def pack(cls, tensors: Sequence[Tensor]) -> FlatParams:
        """Copy ``tensors`` (same dtype and device, at least one) into a new flat buffer."""
        if not tensors:
            raise ValueError("FlatParams.pack needs at least one tensor")
        first = tensors[0]
        for tensor in tensors:
            if tensor.dtype != first.dtype or tensor.device != first.device:
                raise ValueError(
                    f"FlatParams.pack needs one dtype and device, got {first.dtype} on {first.device} "
                    f"and {tensor.dtype} on {tensor.device}; pack each group separately"
                )
        align = max(1, ALIGN_BYTES // first.element_size())
        layout, end = [], 0
        for tensor in tensors:
            offset = _round_up(end, align)
            layout.append(ViewLayout(offset, tuple(tensor.shape), _dense_stride(tensor)))
            end = offset + tensor.numel()
        buffer = torch.zeros(_round_up(end, align), dtype=first.dtype, device=first.device)
        flat = cls(buffer, layout)
        with torch.no_grad():
            for view, tensor in zip(flat.views, tensors):
                view.copy_(tensor)
        return flat

    @classmethod
    def pack_parameters(cls, parameters: Sequence[torch.nn.Parameter]) -> FlatParams:
        """Pack, then make each parameter's storage its view (``p.data = view``).

        Afterwards the module reads and the optimizer writes the flat buffer, so the EMA kernel
        sees the live weights. Do this before building the optimizer or compiling the model.
        """
        flat = cls.pack([p.detach() for p in parameters])
        for parameter, view in zip(parameters, flat.views):
            parameter.data = view
        return flat

    def clone(self) -> FlatParams:
        """An independent copy with the same layout (e.g. the EMA's starting weights)."""
        return FlatParams(self.buffer.clone(), self.layout)

    def unpack(self) -> list[Tensor]:
        """Independent copies of the packed tensors, in packing order, with their strides."""
        return [view.clone() for view in self.views]

    def same_layout(self, other: FlatParams) -> bool:
        """True when elementwise work between the two buffers pairs up matching tensors."""
        return (
            self.layout == other.layout
            and self.buffer.shape == other.buffer.shape
            and self.buffer.dtype == other.buffer.dtype
            and self.buffer.device == other.buffer.device
        )

    def __len__(self) -> int:
        return len(self.views)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.views)

    def __repr__(self) -> str:
        return f"FlatParams({len(self)} tensors, {self.buffer.numel()} {self.buffer.dtype} on {self.buffer.device})"


def _dense_stride(tensor: Tensor) -> tuple[int, ...]:
    """The tensor's own strides if they tile exactly ``numel`` elements (any dim order), else contiguous."""
    dims = sorted((stride, size) for size, stride in zip(tensor.shape, tensor.stride()) if size > 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return _contiguous_stride(tensor.shape)
        expected *= size
    return tuple(tensor.stride()) if tensor.numel() > 0 else _contiguous_stride(tensor.shape)


def _contiguous_stride(shape: Sequence[int]) -> tuple[int, ...]:
    strides, running = [], 1
    for size in reversed(shape):
        strides.append(running)
        running *= max(size, 1)
    return tuple(reversed(strides))


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple
