"""Compile Triton kernels ahead of time for an H100/H200 (sm_90) on a machine without a GPU.

Why: the CPU interpreter proves a kernel's arithmetic, not that it compiles for the GPU it will
run on, nor how many registers it needs. Triton lowers a kernel to PTX and, with the ``ptxas``
it ships, to a cubin for any target, no driver needed; ``cuobjdump`` then reports registers and
local memory (a spill shows as local bytes).

The launch arguments come from the project's own launch code: :func:`captured_launches` runs a
kernel's Python wrapper on CPU tensors with the launch replaced by a recorder, so the compiled
signature (pointer dtypes, integer arguments, constexpr values, alignment) is the one the
wrapper really passes.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

TRITON_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
                 torch.uint8: "u8", torch.int8: "i8", torch.int16: "i16", torch.int32: "i32", torch.int64: "i64",
                 torch.bool: "i1"}


@dataclass
class Launch:
    """One kernel launch as the wrapper made it: the body, its arguments, its launch options."""

    body: Callable[..., Any]
    args: tuple
    kwargs: dict
    grid: Any


@dataclass
class KernelReport:
    """What the compiler says of one kernel variant for sm_90."""

    name: str
    ok: bool
    registers: int | None = None
    local_bytes: int | None = None
    ptx_target: str | None = None
    error: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def spills(self) -> bool:
        return bool(self.local_bytes)


class _Recorder:
    """Stands in for a ``triton.jit`` kernel: ``kernel[grid](*args, **kwargs)`` is recorded, not run."""

    def __init__(self, body: Callable[..., Any], launches: list[Launch]) -> None:
        self.body, self.launches = body, launches

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def launch(*args: Any, **kwargs: Any) -> None:
            self.launches.append(Launch(self.body, args, kwargs, grid))
        return launch


@contextlib.contextmanager
def captured_launches(*modules: Any) -> Iterator[list[Launch]]:
    """In each kernel module given, ``triton_kernel(body)`` returns a recorder for the block."""
    launches: list[Launch] = []
    saved = [(m, m.triton_kernel) for m in modules]
    for module in modules:
        module.triton_kernel = lambda body: _Recorder(body, launches)
    try:
        yield launches
    finally:
        for module, original in saved:
            module.triton_kernel = original


def _is_constexpr(parameter: inspect.Parameter) -> bool:
    return "constexpr" in str(parameter.annotation)


def _aligned(value: Any) -> bool:
    """What Triton's JIT specializes on: 16-byte-aligned pointers and integers divisible by 16."""
    if isinstance(value, torch.Tensor):
        return value.data_ptr() % 16 == 0
    return isinstance(value, int) and not isinstance(value, bool) and value % 16 == 0


def signature_of(launch: Launch) -> tuple[dict[str, str], dict[str, Any], dict[tuple[int, ...], list]]:
    """``(signature, constexprs, attrs)`` for ``ASTSource`` from a recorded launch."""
    parameters = list(inspect.signature(launch.body).parameters.values())
    bound = dict(zip((p.name for p in parameters), launch.args))
    bound.update({k: v for k, v in launch.kwargs.items() if k not in ("num_warps", "num_stages")})
    signature: dict[str, str] = {}
    constexprs: dict[str, Any] = {}
    attrs: dict[tuple[int, ...], list] = {}
    for index, p in enumerate(parameters):
        value = bound[p.name]
        if _is_constexpr(p):
            signature[p.name], constexprs[p.name] = "constexpr", value
            continue
        if isinstance(value, torch.Tensor):
            signature[p.name] = "*" + TRITON_DTYPES[value.dtype]
        elif isinstance(value, bool):
            signature[p.name] = "i1"
        elif isinstance(value, int):
            signature[p.name] = "i32" if -2**31 <= value < 2**31 else "i64"
        elif isinstance(value, float):
            signature[p.name] = "fp32"
        else:
            raise TypeError(f"{p.name}: cannot type a {type(value).__name__} argument")
        if _aligned(value):
            attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


def triton_bin(tool: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", tool)


def compile_sm90(name: str, body: Callable[..., Any], signature: dict[str, str], constexprs: dict[str, Any],
                 attrs: dict[tuple[int, ...], list] | None = None, num_warps: int = 4, keep: str | None = None) -> KernelReport:
    """Compile ``body`` for sm_90 and read its registers and local memory; never raises.

    FP fusion is on, as in Triton's launches today (the kernels spell their fused multiply-adds
    out, so their results do not depend on it)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    try:
        source = ASTSource(fn=triton.jit(body), signature=signature, constexprs=constexprs, attrs=attrs)
        kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "enable_fp_fusion": True})
    except Exception as exc:
        return KernelReport(name, ok=False, error=f"{type(exc).__name__}: {str(exc).strip()[:400]}")
    folder = keep or tempfile.mkdtemp(prefix="sm90-")
    cubin = os.path.join(folder, f"{name}.cubin")
    with open(cubin, "wb") as f:
        f.write(kernel.asm["cubin"])
    with open(os.path.join(folder, f"{name}.ptx"), "w") as f:
        f.write(kernel.asm["ptx"])
    target = next((line.split()[1] for line in kernel.asm["ptx"].splitlines() if line.startswith(".target")), None)
    registers, local = resource_usage(cubin)
    ok = target is not None and target.startswith("sm_90") and registers is not None
    return KernelReport(name, ok=ok, registers=registers, local_bytes=local, ptx_target=target,
                        error=None if ok else f"target {target}, registers {registers}",
                        files={"cubin": cubin, "ptx": cubin[:-6] + ".ptx"})


def resource_usage(cubin: str) -> tuple[int | None, int | None]:
    """(registers, local memory bytes) of the first kernel in a cubin, from ``cuobjdump -res-usage``."""
    out = subprocess.run([triton_bin("cuobjdump"), "-res-usage", cubin], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+).*?LOCAL:(\d+)", out)
    return (int(found.group(1)), int(found.group(2))) if found else (None, None)


def compile_launch(name: str, launch: Launch, keep: str | None = None) -> KernelReport:
    signature, constexprs, attrs = signature_of(launch)
    return compile_sm90(name, launch.body, signature, constexprs, attrs, num_warps=launch.kwargs.get("num_warps", 4), keep=keep)
