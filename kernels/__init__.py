"""Hand-written Triton kernels for the training loop's hot spots, each beside its pure-torch reference.

Every module imports without Triton; the dispatching functions (``augment_normalize``,
``ema_update``) fall back to the reference unless the data are on CUDA and Triton imports.
See kernels/README.md for what each kernel does and the keep-or-drop rule.
"""
from __future__ import annotations

from .augment_normalize import (
    augment_normalize,
    augment_normalize_reference,
    augment_normalize_triton,
    normalize_lut,
)
from .ema_update import TRITON_EMA_DTYPES, ema_update, ema_update_reference, ema_update_triton
from .flat_params import ALIGN_BYTES, FlatParams, ViewLayout
from .triton_support import should_use_triton, triton_is_available

__all__ = [
    "ALIGN_BYTES",
    "TRITON_EMA_DTYPES",
    "FlatParams",
    "ViewLayout",
    "augment_normalize",
    "augment_normalize_reference",
    "augment_normalize_triton",
    "ema_update",
    "ema_update_reference",
    "ema_update_triton",
    "normalize_lut",
    "should_use_triton",
    "triton_is_available",
]
