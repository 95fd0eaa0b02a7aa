"""One pass from the uint8 dataset on the device to the normalized, augmented training batch.

Why: the pure-torch path (``speedrun.data.fused_input.augment_normalize_reference``) gathers the
batch, builds crop indices, gathers again, masks, converts and normalizes: several kernel
launches and several round trips through memory for a few megabytes. This Triton kernel reads
each source byte once and writes each output element once, with the padding done by index
arithmetic.

The reference is the spec: speedrun's ``apply_augment`` then ``normalize`` on
``dataset_u8[indices]``. The kernel equals it bit for bit in every dtype, because it maps each
uint8 value through a table of ``normalize``'s own outputs (the ``lut`` the caller passes,
built by ``speedrun.data.fused_input.normalize_lut``) instead of re-doing the float arithmetic
(where a fused multiply-add would round differently). This module imports nothing from
speedrun: the kernels depend on torch and Triton only, and speedrun calls them.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from .triton_support import triton_kernel

__all__ = ["BatchDraws", "augment_normalize_triton"]

_DRAW_NAMES = ("crop_y", "crop_x", "flip", "cutout_y", "cutout_x")


class BatchDraws(Protocol):
    """A batch's random draws, one value per image (``speedrun.data.augment.AugmentParams`` is one):
    ``crop_y``/``crop_x``, row and column offsets into the padded image (clamped to
    ``[0, 2 * crop_padding]``); ``flip``, bool; ``cutout_y``/``cutout_x``, the top-left corner of
    the unclipped cutout window (may be < 0)."""

    @property
    def crop_y(self) -> Tensor: ...
    @property
    def crop_x(self) -> Tensor: ...
    @property
    def flip(self) -> Tensor: ...
    @property
    def cutout_y(self) -> Tensor: ...
    @property
    def cutout_x(self) -> Tensor: ...


def augment_normalize_triton(
    dataset_u8: Tensor,
    indices: Tensor,
    draws: BatchDraws,
    lut: Tensor,
    *,
    crop_padding: int,
    reflect: bool,
    flip: bool,
    cutout_size: int,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """The batch ``dataset_u8[indices]`` cropped, flipped, cut out and normalized, in one launch.

    ``lut`` is the ``(C, 256)`` table of normalized values in ``dtype``; ``crop_padding``,
    ``reflect`` (else zero padding), ``flip`` and ``cutout_size`` (0: none) say which
    augmentations apply. Any dataset strides; indices may be negative (they wrap) and must lie
    in ``[-N, N)``: they are not checked, as checking would sync with the device. Returns a new
    channels_last ``(B, C, H, W)`` tensor in ``dtype``. Runs on CUDA, or on CPU tensors under
    ``TRITON_INTERPRET=1``.
    """
    _check_inputs(dataset_u8, indices, draws, lut, crop_padding=crop_padding, reflect=reflect, dtype=dtype)
    from ._augment_normalize_body import augment_normalize_body

    num_images, channels, height, width = dataset_u8.shape
    batch = indices.shape[0]
    out = torch.empty(
        (batch, channels, height, width), dtype=dtype, device=dataset_u8.device, memory_format=torch.channels_last
    )
    if batch == 0:
        return out
    kernel = triton_kernel(augment_normalize_body)
    kernel[(batch,)](
        dataset_u8, indices, draws.crop_y, draws.crop_x, draws.flip.view(torch.uint8),
        draws.cutout_y, draws.cutout_x, lut, out,
        num_images,
        *dataset_u8.stride(),
        *out.stride(),
        CHANNELS=channels, HEIGHT=height, WIDTH=width,
        PADDING=crop_padding, REFLECT=reflect, FLIP=flip, CUTOUT=cutout_size,
        PIXEL_BLOCK=_next_power_of_2(height * width), CHANNEL_BLOCK=_next_power_of_2(channels),
        num_warps=4,
    )
    return out


def _check_inputs(dataset_u8: Tensor, indices: Tensor, draws: BatchDraws, lut: Tensor, *, crop_padding: int,
                  reflect: bool, dtype: torch.dtype) -> None:
    """Metadata checks only (shapes, dtypes, devices): they never wait for the device."""
    if dataset_u8.dtype != torch.uint8 or dataset_u8.dim() != 4:
        raise ValueError(f"dataset_u8 must be uint8 (N, C, H, W), got {dataset_u8.dtype} {tuple(dataset_u8.shape)}")
    if indices.dim() != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"indices must be a 1-D integer tensor, got {indices.dtype} {tuple(indices.shape)}")
    batch = indices.shape[0]
    tensors = {"indices": indices, **{name: getattr(draws, name) for name in _DRAW_NAMES}}
    for name, tensor in tensors.items():
        if tensor.device != dataset_u8.device:
            raise ValueError(f"{name} is on {tensor.device}, the dataset on {dataset_u8.device}")
        if tensor.shape != (batch,):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected ({batch},) like indices")
    if draws.flip.dtype != torch.bool:
        raise ValueError(f"the flip draws must be bool, got {draws.flip.dtype}")
    channels, height, width = dataset_u8.shape[1:]
    if lut.shape != (channels, 256) or lut.dtype != dtype or lut.device != dataset_u8.device:
        raise ValueError(f"lut must be ({channels}, 256) {dtype} on {dataset_u8.device}, "
                         f"got {tuple(lut.shape)} {lut.dtype} on {lut.device}")
    if reflect and crop_padding >= min(height, width):
        raise ValueError(f"reflect padding {crop_padding} must be smaller than the image ({height}x{width})")


def _next_power_of_2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()
