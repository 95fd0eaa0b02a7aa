"""Optional Triton: find out whether it can be used, and build kernels lazily.

Why this module exists: every kernel module must import (and fall back to its pure-torch
reference) on machines without Triton, and ``triton.jit`` picks between compiling for the GPU
and running in the CPU interpreter at *decoration* time, from ``TRITON_INTERPRET``. Decorating
at import would freeze that choice for the whole process, so kernels are decorated on first
use, once per value of ``TRITON_INTERPRET``; tests can then run the interpreter and the GPU in
one process.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch

INTERPRET_ENV = "TRITON_INTERPRET"


@functools.cache
def triton_is_available() -> bool:
    """True when ``import triton`` works (cached: importing is slow and the answer is fixed)."""
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install raising anything else on import
        return False
    return True


def should_use_triton(tensor: torch.Tensor) -> bool:
    """The dispatch rule shared by all kernels: Triton for CUDA tensors when Triton imports."""
    return tensor.is_cuda and triton_is_available()


def triton_kernel(body: Callable[..., Any]) -> Any:
    """``triton.jit(body)`` for the current ``TRITON_INTERPRET`` mode, built once per mode."""
    return _jit_for_mode(body, os.environ.get(INTERPRET_ENV))


@functools.cache
def _jit_for_mode(body: Callable[..., Any], interpret_mode: str | None) -> Any:
    # interpret_mode is only the cache key: triton.jit reads the same variable itself.
    import triton

    return triton.jit(body)
