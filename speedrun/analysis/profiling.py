"""Where a training epoch's time goes: a torch.profiler breakdown of one warmed-up epoch.

This is the measurement behind ``kernels/``: a hand-written kernel is worth writing only for
an op that takes a real share of the epoch and that the compiler leaves unfused. On a GPU the
share is of self device (kernel) time; on a CPU, of self CPU time.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torch.profiler import ProfilerActivity, profile

from speedrun.instruments.timing import synchronize
from speedrun.outputs import check_output, publish
from speedrun.settings import check, setting
from speedrun.training.trainer import Trainer


@dataclass(frozen=True)
class ProfileOptions:
    """How much of the profile ``speedrun profile`` lists, and where else it goes."""

    rows: int = setting(25, "ops to list", low=1, high=10_000)
    markdown: str | None = setting(None, "also write the table to a new Markdown FILE", metavar="FILE")
    trace: str | None = setting(None, "also save a Chrome trace (chrome://tracing)", metavar="FILE")

    def __post_init__(self) -> None:
        check(self)



@dataclass(frozen=True)
class ProfileRow:
    name: str
    calls: int
    self_time_us: float
    share: float          # of the profiled total


@dataclass(frozen=True)
class ProfileReport:
    device: str
    clock: str            # "device" (kernel time on the GPU) or "cpu"
    total_us: float       # summed self time of the ops on that clock
    wall_s: float         # the profiled epoch's wall time, profiler overhead included
    steps: int
    rows: tuple[ProfileRow, ...]

    def to_markdown(self, limit: int = 25) -> str:
        busy = self.total_us / 1e6 / self.wall_s if self.wall_s > 0 else float("nan")
        lines = [f"Profile of one training epoch ({self.steps} steps, extension hooks included) plus its "
                 f"evaluation on {self.device}: wall time {self.wall_s * 1000:.1f} ms, self {self.clock} time "
                 f"{self.total_us / 1000:.1f} ms ({100 * busy:.0f}% of the wall time). Under the profiler the "
                 f"wall time runs above an unprofiled epoch's.", "",
                 "| op | calls | self time (ms) | share |", "| --- | ---: | ---: | ---: |"]
        for row in self.rows[:limit]:
            lines.append(f"| `{row.name}` | {row.calls} | {row.self_time_us / 1000:.2f} | {100 * row.share:.1f}% |")
        return "\n".join(lines) + "\n"


def profile_epoch(trainer: Trainer, lr: Tensor, momentum: Tensor | None = None, *, seed: int = 0,
                  trace_path: str | None = None) -> ProfileReport:
    """Profile one training epoch and its evaluation of a warmed-up ``trainer``'s run at ``lr``, hooks included.

    The epoch is the run's first, set up as ``Trainer.run`` does (the extensions' per-step and
    epoch-end hooks run); call after the warm-up, so compilation is not in the profile. Besides
    the ops' self time (kernel time on a GPU) it reports the epoch's wall time, since a gap
    between the two is host overhead (launches, Python) that no kernel fixes. ``trace_path``
    also saves a Chrome trace for a closer look.
    """
    device = trainer.device
    on_gpu = device.type == "cuda"
    trainer.initialize(seed)
    run = trainer.start_run(seed, lr, momentum)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        trainer.train_epoch(run, 1)
        trainer.end_epoch(run, 1, evaluate=True)
        synchronize(device)
        wall_s = time.perf_counter() - started
    if trace_path:
        with tempfile.TemporaryDirectory() as scratch:       # the profiler writes a path; publish it as new
            prof.export_chrome_trace(os.path.join(scratch, "trace.json"))
            trace = Path(scratch, "trace.json").read_bytes()
        publish(check_output(trace_path, flag="--trace"), lambda f: f.write(trace), binary=True, flag="--trace")
    return breakdown(prof.key_averages(), device=str(device), on_gpu=on_gpu, wall_s=wall_s,
                     steps=trainer.steps_per_epoch)


def breakdown(averages, *, device: str, on_gpu: bool, wall_s: float, steps: int) -> ProfileReport:
    """Rows sorted by self time; ops with no self time on the chosen clock are left out."""
    def self_time(event) -> float:
        return float(event.self_device_time_total if on_gpu else event.self_cpu_time_total)

    timed = [(e.key, int(e.count), self_time(e)) for e in averages if self_time(e) > 0]
    total = sum(t for _, _, t in timed)
    rows = tuple(ProfileRow(name, calls, t, t / total) for name, calls, t in sorted(timed, key=lambda r: -r[2]))
    return ProfileReport(device=device, clock="device" if on_gpu else "cpu", total_us=total, wall_s=wall_s,
                         steps=steps, rows=rows)
