"""The EMA / lookahead step over every parameter at once, with the decay left on the device.

Semantics (all three functions): for each pair, ``ema <- decay*ema + (1-decay)*param`` in place,
computed exactly as ``torch.lerp(ema, param, w)`` with ``w = (1 - decay)`` evaluated in float32
and then rounded to ema's dtype (what ``ema.lerp_(param, 1 - decay)`` does with a Python float).
Arithmetic is float32, rounded once to ema's dtype. ``decay`` is a 0-d floating tensor on the
parameters' device, so a decay schedule never syncs the host; decay 0 copies ``param`` and
decay 1 leaves ``ema`` unchanged, exactly.

Why a kernel: ``torch._foreach_lerp_`` with a tensor weight takes a per-tensor slow path on CUDA
(one launch per parameter). Packing the parameters into one :class:`~speedrun.kernels.flat_params.FlatParams`
buffer makes it a single launch, from Triton or from the reference on the buffers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .flat_params import FlatParams
from .triton_support import should_use_triton, triton_kernel

__all__ = ["TRITON_EMA_DTYPES", "ema_update", "ema_update_reference", "ema_update_triton"]

# Storage dtypes the kernel handles (it computes in float32, which is exact only up to float32).
TRITON_EMA_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_BLOCK = 2048


def ema_update_reference(ema: Sequence[Tensor], params: Sequence[Tensor], decay: Tensor) -> None:
    """Pure torch, via one ``torch._foreach_lerp_``: the spec of the update (module docstring)."""
    _check_pairs(ema, params)
    _check_decay(decay)
    if not ema:
        return
    weight32 = 1 - decay.to(torch.float32)
    weights: dict[tuple[torch.device, torch.dtype], Tensor] = {}
    for tensor in ema:
        key = (tensor.device, tensor.dtype)
        if key not in weights:  # same dtype as ema: lerp never promotes, on any torch version
            weights[key] = weight32.to(device=tensor.device, dtype=tensor.dtype)
    with torch.no_grad():
        torch._foreach_lerp_(list(ema), list(params), [weights[(t.device, t.dtype)] for t in ema])


def ema_update_triton(ema: FlatParams, params: FlatParams, decay: Tensor) -> None:
    """One Triton launch over the two flat buffers (same layout, dtype in ``TRITON_EMA_DTYPES``).

    Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1``.
    """
    _check_flat(ema, params)
    _check_decay(decay)
    if ema.buffer.dtype not in TRITON_EMA_DTYPES:
        raise ValueError(f"the EMA kernel handles {TRITON_EMA_DTYPES}, got {ema.buffer.dtype}")
    from ._ema_update_body import ema_update_body

    numel = ema.buffer.numel()
    if numel == 0:
        return
    decay = decay.to(ema.buffer.device)
    kernel = triton_kernel(ema_update_body)
    kernel[(-(-numel // _BLOCK),)](ema.buffer, params.buffer, decay, numel, BLOCK=_BLOCK, num_warps=4)


def ema_update(
    ema: FlatParams | Sequence[Tensor], params: FlatParams | Sequence[Tensor], decay: Tensor
) -> None:
    """Triton for CUDA ``FlatParams`` of a supported dtype when Triton imports, else the reference.

    Two ``FlatParams`` go to the reference as their two buffers (one lerp, not one per tensor).
    """
    if isinstance(ema, FlatParams) and isinstance(params, FlatParams):
        _check_flat(ema, params)
        if should_use_triton(ema.buffer) and ema.buffer.dtype in TRITON_EMA_DTYPES:
            ema_update_triton(ema, params, decay)
        else:
            ema_update_reference([ema.buffer], [params.buffer], decay)
        return
    ema_update_reference(_as_list(ema), _as_list(params), decay)


def _as_list(tensors: FlatParams | Sequence[Tensor]) -> list[Tensor]:
    return list(tensors.views) if isinstance(tensors, FlatParams) else list(tensors)


def _check_pairs(ema: Sequence[Tensor], params: Sequence[Tensor]) -> None:
    if len(ema) != len(params):
        raise ValueError(f"ema has {len(ema)} tensors but params has {len(params)}")
    for i, (average, param) in enumerate(zip(ema, params)):
        if average.shape != param.shape or average.dtype != param.dtype or average.device != param.device:
            raise ValueError(
                f"ema[{i}] is {average.dtype} {tuple(average.shape)} on {average.device} but params[{i}] "
                f"is {param.dtype} {tuple(param.shape)} on {param.device}; they must match"
            )
        if not average.dtype.is_floating_point:
            raise ValueError(f"ema[{i}] must be floating point, got {average.dtype}")


def _check_flat(ema: FlatParams, params: FlatParams) -> None:
    if not ema.same_layout(params):
        raise ValueError(f"ema {ema!r} and params {params!r} must share one layout (pack same-shaped tensors)")


def _check_decay(decay: Tensor) -> None:
    if not isinstance(decay, Tensor) or decay.dim() != 0 or not decay.dtype.is_floating_point:
        raise ValueError(f"decay must be a 0-d floating tensor (kept on the device), got {decay!r}")
