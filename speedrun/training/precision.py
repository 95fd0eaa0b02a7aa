"""Mixed precision: the autocast dtype on CUDA, and fp16's static loss scale.

``bf16`` (the default) keeps fp32's range, so nothing underflows; its 8-bit mantissa rounds
coarsely, which airbench's authors found to add noise in the small whitened channels, hence
``fp16`` (airbench and hlb-CIFAR10 train in it). fp16 has 10 mantissa bits but a narrow range:
this loop's loss is the batch *mean*, whose gradients are a batch's size smaller than a summed
loss's and can fall below fp16's normal range. So under fp16 the loss is multiplied by a static
scale before ``backward()`` and every gradient divided by it afterwards, in one fused op: the
scale is the batch size rounded up to a power of two (a summed loss's magnitude; a power of two
makes scaling and unscaling exact in fp32). It is static rather than PyTorch's GradScaler,
whose overflow check reads a flag back to the host every step; airbench trains fp16 without
one. ``fp32`` turns autocast off. On the CPU autocast is always off (bf16 is slow there), but
the loss scale still applies, so the CPU tests check that it leaves the step unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

from speedrun.training.config import AMP_DTYPES

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_for(device: torch.device, amp_dtype: str = "bf16") -> AbstractContextManager:
    """Autocast in ``amp_dtype`` on CUDA; full precision for ``fp32`` and on any other device."""
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {amp_dtype!r}")
    if device.type == "cuda" and amp_dtype != "fp32":
        return torch.autocast("cuda", dtype=_AUTOCAST_DTYPES[amp_dtype])
    return nullcontext()


def static_loss_scale(amp_dtype: str, batch_size: int) -> float:
    """fp16's static loss scale, the batch size rounded up to a power of two; 1 otherwise."""
    return float(2 ** math.ceil(math.log2(batch_size))) if amp_dtype == "fp16" else 1.0


def scaled_backward(loss: Tensor, scale: float, param_groups: Iterable[dict]) -> None:
    """``loss.backward()`` at ``scale``, then the gradients of ``param_groups``' tensors unscaled."""
    if scale == 1.0:
        loss.backward()
        return
    (loss * scale).backward()
    grads = [p.grad for group in param_groups for p in group["params"] if p.grad is not None]
    if grads:
        torch._foreach_mul_(grads, 1.0 / scale)
