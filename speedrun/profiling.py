"""Where a training epoch's time goes: a torch.profiler breakdown of one warmed-up epoch.

This is the measurement behind ``kernels/``: a hand-written kernel is worth writing only for
an op that takes a real share of the epoch and that the compiler leaves unfused. On a GPU the
share is of self device (kernel) time; on a CPU, of self CPU time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

from speedrun.harness import PreparedRun
from speedrun.optim import build_optimizer
from speedrun.timing import synchronize


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
    total_us: float
    rows: tuple[ProfileRow, ...]

    def to_markdown(self, limit: int = 25) -> str:
        lines = [f"Profile of one training epoch plus one evaluation on {self.device} "
                 f"(self {self.clock} time, total {self.total_us / 1000:.1f} ms):", "",
                 "| op | calls | self time (ms) | share |", "| --- | ---: | ---: | ---: |"]
        for row in self.rows[:limit]:
            lines.append(f"| `{row.name}` | {row.calls} | {row.self_time_us / 1000:.2f} | {100 * row.share:.1f}% |")
        return "\n".join(lines) + "\n"


def profile_epoch(prepared: PreparedRun, *, seed: int = 0, trace_path: str | None = None) -> ProfileReport:
    """Profile one training epoch and one evaluation of a warmed-up ``prepared`` run.

    Call after the warm-up, so compilation is not in the profile. ``trace_path`` also saves a
    Chrome trace for a closer look.
    """
    trainer, device = prepared.trainer, prepared.device
    on_gpu = device.type == "cuda"
    trainer.initialize(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = build_optimizer(trainer.param_groups(), trainer.optimizer_config, prepared.lr, prepared.momentum)
    first_flips = torch.rand(len(trainer.data.train_images), generator=gen, device=device) < 0.5
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        trainer.train_epoch(1, opt, gen, first_flips)
        trainer.evaluate()
        synchronize(device)
    if trace_path:
        prof.export_chrome_trace(trace_path)
    return breakdown(prof.key_averages(), device=str(device), on_gpu=on_gpu)


def breakdown(averages, *, device: str, on_gpu: bool) -> ProfileReport:
    """Rows sorted by self time; ops with no self time on the chosen clock are left out."""
    def self_time(event) -> float:
        return float(event.self_device_time_total if on_gpu else event.self_cpu_time_total)

    timed = [(e.key, int(e.count), self_time(e)) for e in averages if self_time(e) > 0]
    total = sum(t for _, _, t in timed)
    rows = tuple(ProfileRow(name, calls, t, t / total) for name, calls, t in sorted(timed, key=lambda r: -r[2]))
    return ProfileReport(device=device, clock="device" if on_gpu else "cpu", total_us=total, rows=rows)
