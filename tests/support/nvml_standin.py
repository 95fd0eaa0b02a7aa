"""A stand-in ``pynvml`` for the telemetry tests: this project's own, written for them.

CI has no GPU and no NVIDIA driver, so :class:`speedrun.instruments.telemetry.NvmlSampler` is tested
against this module instead. It behaves like NVML where the sampler depends on it: ``nvmlInit`` and
``nvmlShutdown`` are reference-counted and every other call raises ``NVMLError("Uninitialized")``
outside them, so a test can check that each init is paired with one shutdown. It records which
thread made each call, so a test can check that sampling is off the main thread, and any of its
functions can be made to raise ``NVMLError("Not Supported")``, as power does on some GPUs and
containers.

    nvml = make_pynvml(fail={"nvmlDeviceGetPowerUsage"})
    with installed(nvml):
        sampler = NvmlSampler(torch.device("cuda", 0), interval_s=0.01)
    sampler.start(); ...; sampler.stop()
    assert sampler.summary()["missing"] == {"power_w": "NVMLError: Not Supported"}
    assert nvml.state.init_calls == nvml.state.shutdown_calls == 1
"""
from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2   # NVML's own values

# The readings it gives; distinct per clock kind, so a test sees the SM clock was the one asked for.
DRIVER_VERSION = "550.54.15"
GPU_UTIL_PCT, MEM_UTIL_PCT = 87, 41
MEM_USED_BYTES, MEM_TOTAL_BYTES = 6 * 2**30, 80 * 2**30
POWER_MILLIWATTS = 312_500
CLOCK_MHZ = {NVML_CLOCK_GRAPHICS: 1_980, NVML_CLOCK_SM: 1_755, NVML_CLOCK_MEM: 2_619}
DEVICE_COUNT = 1

FUNCTIONS = ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetHandleByIndex", "nvmlSystemGetDriverVersion",
             "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetPowerUsage",
             "nvmlDeviceGetClockInfo")


class NVMLError(Exception):
    """What every stand-in function raises on failure, as pynvml's functions raise its NVMLError."""


@dataclass(frozen=True)
class Handle:
    """A device handle; queries accept only handles this module gave out."""

    index: int


@dataclass(frozen=True)
class Utilization:
    """``nvmlDeviceGetUtilizationRates``'s answer: percentages of the last sample period."""

    gpu: int
    memory: int


@dataclass(frozen=True)
class MemoryInfo:
    """``nvmlDeviceGetMemoryInfo``'s answer, in bytes."""

    total: int
    free: int
    used: int


@dataclass(frozen=True)
class Call:
    """One call made to the stand-in: which function, from which thread (``threading.get_ident``)."""

    name: str
    thread: int


@dataclass
class NvmlState:
    """What the stand-in saw, for the tests' assertions. ``*_calls`` count every call, failed or not."""

    fail: frozenset[str] = frozenset()
    init_calls: int = 0
    shutdown_calls: int = 0
    refcount: int = 0                  # successful inits not yet shut down, as NVML counts them
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def threads_of(self, name: str) -> set[int]:
        """The threads that called ``name``."""
        with self.lock:
            return {c.thread for c in self.calls if c.name == name}


class StandinNvml(types.ModuleType):
    """The module :func:`make_pynvml` returns; ``state`` is what it saw."""

    state: NvmlState


def make_pynvml(fail: Iterable[str] = ()) -> StandinNvml:
    """A fresh stand-in ``pynvml`` with one GPU, in which the functions named in ``fail`` raise ``NVMLError("Not Supported")``.

    An unknown name in ``fail`` is a ``ValueError``, so a misspelt name cannot make a test pass by failing nothing.
    """
    failing = frozenset(fail)
    unknown = failing - set(FUNCTIONS)
    if unknown:
        raise ValueError(f"not a stand-in NVML function: {sorted(unknown)}; the functions are {FUNCTIONS}")
    state = NvmlState(fail=failing)

    def enter(name: str, *, needs_init: bool = True) -> None:
        """Record the call, then fail it as asked, or as NVML does when not initialized."""
        with state.lock:
            state.calls.append(Call(name, threading.get_ident()))
            if name == "nvmlInit":
                state.init_calls += 1
            elif name == "nvmlShutdown":
                state.shutdown_calls += 1
            initialized = state.refcount > 0
        if name in state.fail:
            raise NVMLError("Not Supported")
        if needs_init and not initialized:
            raise NVMLError("Uninitialized")

    def check_handle(handle: Any) -> None:
        if not isinstance(handle, Handle):
            raise NVMLError("Invalid Argument")

    def nvmlInit() -> None:
        enter("nvmlInit", needs_init=False)
        with state.lock:
            state.refcount += 1

    def nvmlShutdown() -> None:
        enter("nvmlShutdown")
        with state.lock:
            state.refcount -= 1

    def nvmlDeviceGetHandleByIndex(index: int) -> Handle:
        enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < DEVICE_COUNT:
            raise NVMLError("Invalid Argument")
        return Handle(index)

    def nvmlSystemGetDriverVersion() -> str:
        enter("nvmlSystemGetDriverVersion")
        return DRIVER_VERSION

    def nvmlDeviceGetUtilizationRates(handle: Handle) -> Utilization:
        enter("nvmlDeviceGetUtilizationRates")
        check_handle(handle)
        return Utilization(gpu=GPU_UTIL_PCT, memory=MEM_UTIL_PCT)

    def nvmlDeviceGetMemoryInfo(handle: Handle) -> MemoryInfo:
        enter("nvmlDeviceGetMemoryInfo")
        check_handle(handle)
        return MemoryInfo(total=MEM_TOTAL_BYTES, free=MEM_TOTAL_BYTES - MEM_USED_BYTES, used=MEM_USED_BYTES)

    def nvmlDeviceGetPowerUsage(handle: Handle) -> int:
        enter("nvmlDeviceGetPowerUsage")
        check_handle(handle)
        return POWER_MILLIWATTS

    def nvmlDeviceGetClockInfo(handle: Handle, kind: int) -> int:
        enter("nvmlDeviceGetClockInfo")
        check_handle(handle)
        if kind not in CLOCK_MHZ:
            raise NVMLError("Invalid Argument")
        return CLOCK_MHZ[kind]

    module = StandinNvml("pynvml", "A stand-in pynvml for tests (tests/support/nvml_standin.py).")
    module.state = state
    functions: dict[str, Callable[..., Any]] = {
        "nvmlInit": nvmlInit, "nvmlShutdown": nvmlShutdown, "nvmlDeviceGetHandleByIndex": nvmlDeviceGetHandleByIndex,
        "nvmlSystemGetDriverVersion": nvmlSystemGetDriverVersion, "nvmlDeviceGetUtilizationRates": nvmlDeviceGetUtilizationRates,
        "nvmlDeviceGetMemoryInfo": nvmlDeviceGetMemoryInfo, "nvmlDeviceGetPowerUsage": nvmlDeviceGetPowerUsage,
        "nvmlDeviceGetClockInfo": nvmlDeviceGetClockInfo,
    }
    assert set(functions) == set(FUNCTIONS)
    for name, fn in functions.items():
        setattr(module, name, fn)
    module.NVMLError = NVMLError
    module.NVML_CLOCK_GRAPHICS, module.NVML_CLOCK_SM, module.NVML_CLOCK_MEM = NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM
    return module


@contextmanager
def installed(module: types.ModuleType | None) -> Iterator[types.ModuleType | None]:
    """Make ``import pynvml`` give ``module`` inside the block (``None``: the import fails), then put back what was there.

    The sampler imports pynvml when it is built, so only its construction needs to be inside.
    """
    missing = object()
    previous = sys.modules.get("pynvml", missing)
    sys.modules["pynvml"] = module  # type: ignore[assignment]   # None is how sys.modules says "not importable"
    try:
        yield module
    finally:
        if previous is missing:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = previous  # type: ignore[assignment]
