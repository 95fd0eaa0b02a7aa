"""Hand-written Triton kernels for the training loop's hot spots, each beside its pure-torch reference.

Every module imports without Triton and imports nothing from speedrun (speedrun calls the
kernels, never the other way round): ``ema_update`` falls back to its pure-torch reference
unless the data are on CUDA and Triton imports; the input kernel's reference and dispatcher
live in ``speedrun.data.fused_input``, beside the augmentation they implement.
See kernels/README.md for what each kernel does and the keep-or-drop rule.
"""
from __future__ import annotations

from .augment_normalize import BatchDraws, augment_normalize_triton
from .ema_update import (
    TRITON_EMA_DTYPES,
    ema_update,
    ema_update_reference,
    ema_update_triton,
)
from .flat_params import ALIGN_BYTES, FlatParams, ViewLayout
from .triton_support import should_use_triton, triton_is_available

__all__ = [
    "ALIGN_BYTES",
    "TRITON_EMA_DTYPES",
    "BatchDraws",
    "FlatParams",
    "ViewLayout",
    "augment_normalize_triton",
    "ema_update",
    "ema_update_reference",
    "ema_update_triton",
    "should_use_triton",
    "triton_is_available",
]
