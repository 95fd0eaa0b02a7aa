"""Hand-written Triton kernels for the training loop's hot spots, each beside its pure-torch reference.

Every module imports without Triton; the dispatching functions fall back to the reference
unless the data are on CUDA and Triton imports. See kernels/README.md for the keep-or-drop rule.
"""
from __future__ import annotations

from kernels.augment_normalize import (
    augment_normalize,
    augment_normalize_reference,
    augment_normalize_triton,
    normalize_lut,
)
from kernels.triton_support import should_use_triton, triton_is_available

__all__ = [
    "augment_normalize",
    "augment_normalize_reference",
    "augment_normalize_triton",
    "normalize_lut",
    "should_use_triton",
    "triton_is_available",
]
