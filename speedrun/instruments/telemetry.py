"""GPU telemetry through NVML, sampled on a background thread during the timed part.

Utilization, memory used, power and SM clock are sampled every ``interval_s``; the summary
gives their mean and max. Each of the four is queried on its own, because GPUs and containers
differ in what NVML will tell them (power is often "Not Supported"): a query that raises costs
that field, not the run's telemetry. The sample holds null for it, the summary names it with
the first reason, and sampling goes on. Where NVML or a GPU is absent the sampler says why and
records nothing, and the run goes on.

NVML counts ``nvmlInit`` calls per process, so every successful init here is paired with exactly
one ``nvmlShutdown``: in ``stop()``, when a later init step fails, or when a sampler that was
never stopped is garbage-collected (``NvmlSampler(device).driver_version()``).
"""
from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

SAMPLE_FIELDS = ("t_s", "gpu_util_pct", "mem_used_mib", "power_w", "sm_clock_mhz")


def _describe(e: BaseException) -> str:
    return f"{e.__class__.__name__}: {e}"


def _finite(value: float) -> float:
    """A reading as a finite float: a record is JSON, which has no NaN or infinity."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"non-finite reading {value}")
    return value


def _gpu_util_pct(nv: Any, handle: Any) -> float:
    return _finite(nv.nvmlDeviceGetUtilizationRates(handle).gpu)


def _mem_used_mib(nv: Any, handle: Any) -> float:
    return round(_finite(nv.nvmlDeviceGetMemoryInfo(handle).used) / 2**20, 1)


def _power_w(nv: Any, handle: Any) -> float:
    return round(_finite(nv.nvmlDeviceGetPowerUsage(handle)) / 1000.0, 2)   # NVML says milliwatts


def _sm_clock_mhz(nv: Any, handle: Any) -> float:
    return _finite(nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM))


# One query per field after t_s, in SAMPLE_FIELDS order.
_QUERIES: tuple[tuple[str, Callable[[Any, Any], float]], ...] = (
    ("gpu_util_pct", _gpu_util_pct), ("mem_used_mib", _mem_used_mib), ("power_w", _power_w), ("sm_clock_mhz", _sm_clock_mhz))
assert tuple(name for name, _ in _QUERIES) == SAMPLE_FIELDS[1:]


def _shutdown(nvml: Any) -> str | None:
    """Close one NVML init; what went wrong, if anything (there is nothing left to do about it)."""
    try:
        nvml.nvmlShutdown()
    except Exception as e:
        return _describe(e)
    return None


@dataclass
class NvmlSampler:
    """Start/stop around the timed part; ``summary()`` is JSON-ready for the record.

    ``available`` says NVML opened and gave a handle for ``device``, so ``start()`` will sample;
    ``reason`` says why not. ``missing`` maps a field to the first reason a query for it failed
    (later failures of the same field are not kept). A sampler samples once: ``stop()`` closes
    its NVML session, and ``start()`` after that does nothing.
    """

    device: torch.device
    interval_s: float = 0.05
    samples: list[list[float | None]] = field(default_factory=list)   # SAMPLE_FIELDS; None where a query failed
    available: bool = False
    reason: str | None = None
    missing: dict[str, str] = field(default_factory=dict)
    driver_reason: str | None = None          # why driver_version() gave None
    _handle: Any = None
    _nvml: Any = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _release: weakref.finalize | None = None   # the one nvmlShutdown owed for our nvmlInit

    def __post_init__(self) -> None:
        if self.device.type != "cuda":
            self.reason = "no CUDA device: telemetry not recorded"
            return
        try:
            import pynvml  # provided by nvidia-ml-py
            pynvml.nvmlInit()
        except Exception as e:  # missing library, driver or permission: record why, keep going
            self.reason = f"NVML unavailable (nvmlInit: {_describe(e)})"
            return
        # From here on one shutdown is owed: the finalizer pays it once, from close() or when this sampler is collected.
        self._release = weakref.finalize(self, _shutdown, pynvml)
        try:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as e:
            self.reason = f"NVML unavailable (no handle for {self.device}: {_describe(e)})"
            self._close()
            return
        self._nvml = pynvml
        self.available = True

    @property
    def _open(self) -> bool:
        return self._release is not None and self._release.alive

    def _close(self) -> None:
        if self._release is not None:
            self._release()   # runs _shutdown the first time only

    def driver_version(self) -> str | None:
        """The NVIDIA driver's version, or None with ``driver_reason`` saying why: a record is never lost to it."""
        if not self.available or not self._open:
            self.driver_reason = self.reason or "NVML session already closed (stop() was called)"
            return None
        try:
            version = self._nvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else str(version)
        except Exception as e:
            self.driver_reason = f"nvmlSystemGetDriverVersion failed ({_describe(e)})"
            return None

    def _read(self, t0: float) -> list[float | None]:
        """One sample; a query that fails gives None for its field and keeps its first reason."""
        row: list[float | None] = []
        for name, query in _QUERIES:
            try:
                row.append(query(self._nvml, self._handle))
            except Exception as e:
                row.append(None)
                self.missing.setdefault(name, _describe(e))
        return [round(time.perf_counter() - t0, 4), *row]

    def _loop(self, t0: float) -> None:
        try:
            while not self._stop.is_set():
                self.samples.append(self._read(t0))
                self._stop.wait(self.interval_s)
        except Exception as e:  # not a query (those are caught per field): say so rather than die silently
            self.reason = f"NVML sampling stopped ({_describe(e)})"

    def start(self) -> None:
        if not self.available or not self._open or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(time.perf_counter(),), daemon=True, name="nvml-sampler")
        self._thread.start()

    def stop(self) -> None:
        """End sampling and close NVML; safe to call more than once, or without ``start()``."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self._close()

    def summary(self) -> dict:
        """Mean and max of each quantity, plus the raw samples for plots.

        ``available`` is true when some field produced a value. A field that never did has no
        entry of its own (readers test ``name in summary``); a field that failed at all is named in
        ``missing`` with its first reason, and its ``n`` counts the samples that have it. ``samples``
        is there only when available; a failed reading in it is null.
        """
        samples, missing = list(self.samples), dict(self.missing)
        columns = {name: [v for s in samples if (v := s[i]) is not None] for i, name in enumerate(SAMPLE_FIELDS[1:], start=1)}
        recorded = {name: column for name, column in columns.items() if column}
        out: dict[str, Any] = {"available": self.available and bool(recorded), "reason": self.reason,
                               "interval_s": self.interval_s, "fields": list(SAMPLE_FIELDS), "missing": missing}
        for name, column in recorded.items():
            out[name] = {"mean": sum(column) / len(column), "max": max(column), "n": len(column)}
        if recorded:
            out["samples"] = samples
        elif self.reason is None and samples:
            out["reason"] = "every NVML query failed: " + "; ".join(f"{name}: {why}" for name, why in missing.items())
        elif self.reason is None and self.available:
            out["reason"] = "no samples taken (timed part shorter than the sampling interval)"
        return out
