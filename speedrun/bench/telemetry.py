"""GPU telemetry through NVML, sampled on a background thread during the timed part.

Utilization, memory used, power and SM clock are sampled every ``interval_s``; the summary
gives their mean and max. Where NVML or a GPU is absent the sampler says why and records
nothing, and the run goes on.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

SAMPLE_FIELDS = ("t_s", "gpu_util_pct", "mem_used_mib", "power_w", "sm_clock_mhz")


@dataclass
class NvmlSampler:
    """Start/stop around the timed part; ``summary()`` is JSON-ready for the record."""

    device: torch.device
    interval_s: float = 0.05
    samples: list[list[float]] = field(default_factory=list)
    available: bool = False
    reason: str | None = None
    _handle: Any = None
    _nvml: Any = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.device.type != "cuda":
            self.reason = "no CUDA device: telemetry not recorded"
            return
        try:
            import pynvml  # provided by nvidia-ml-py
            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
            self.available = True
        except Exception as e:  # missing library, driver or permission: record why, keep going
            self.reason = f"NVML unavailable ({e.__class__.__name__}: {e})"

    def driver_version(self) -> str | None:
        if not self.available:
            return None
        version = self._nvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)

    def _read(self, t0: float) -> list[float]:
        nv, h = self._nvml, self._handle
        util = nv.nvmlDeviceGetUtilizationRates(h).gpu
        mem = nv.nvmlDeviceGetMemoryInfo(h).used / 2**20
        power = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
        clock = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
        return [round(time.perf_counter() - t0, 4), float(util), round(mem, 1), round(power, 2), float(clock)]

    def _loop(self, t0: float) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._read(t0))
            except Exception as e:
                self.reason = f"NVML sampling failed ({e.__class__.__name__}: {e})"
                return
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if not self.available:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(time.perf_counter(),), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def summary(self) -> dict:
        """Mean and max of each quantity, plus the raw samples for plots."""
        out: dict[str, Any] = {"available": self.available and bool(self.samples), "reason": self.reason,
                               "interval_s": self.interval_s, "fields": list(SAMPLE_FIELDS)}
        if self.samples:
            for i, name in enumerate(SAMPLE_FIELDS[1:], start=1):
                column = [s[i] for s in self.samples]
                out[name] = {"mean": sum(column) / len(column), "max": max(column)}
            out["samples"] = self.samples
        elif self.available and self.reason is None:
            out["reason"] = "no samples taken (timed part shorter than the sampling interval)"
        return out
