"""Pictures of one record: the accuracy curves, the schedule, and the GPU telemetry.

Three PNGs per record, named ``<prefix>-accuracy.png``, ``<prefix>-schedule.png`` and
``<prefix>-gpu.png``:

* accuracy: test accuracy against wall time (``elapsed_s``) for every run, the target as a
  horizontal line, and an x on the evaluation that established each run's time-to-target;
* schedule: learning rate over optimizer steps with momentum on a second axis (the optimizer's
  constant momentum from ``config.recipe.optimizer`` when the schedule does not vary it), and
  the epoch boundaries as faint vertical lines;
* gpu: utilization (top) and power (bottom) over the timed part from each run's
  ``nvml.samples``. When NVML recorded nothing (CPU runs, no driver) the picture is still
  written and says so with the recorded reason, so a plot folder always has the same three
  files and the absence is visible rather than silent.

matplotlib is an optional extra: without it :func:`plot_record` raises :class:`SpeedrunError`
naming the install command. Figures are drawn with the object-oriented API on the Agg canvas
(no pyplot, no global backend switch), written to a temp file and renamed into place; existing
files are never overwritten: a ``-1``, ``-2``... suffix is added to the prefix instead.
"""
from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedrun.errors import SpeedrunError
from speedrun.outputs import check_output, matplotlib_available, write_figure
from speedrun.results.records import completeness_note
from speedrun.results.run_values import gpu_label, schedule_label
from speedrun.settings import setting

PLOT_NAMES = ("accuracy", "schedule", "gpu")
_MISSING_MATPLOTLIB = "plotting needs matplotlib: pip install 'speedrun[plot]'"


@dataclass(frozen=True)
class PlotOptions:
    """Where ``speedrun plot`` writes its PNGs."""

    out_dir: str | None = setting(None, "folder for the PNGs (default: beside the record)", metavar="DIR")



def plot_record(record: dict, out_dir: str | os.PathLike, *, prefix: str | None = None,
                log: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Write the PNGs for ``record`` into ``out_dir`` and return their paths.

    The accuracy and schedule pictures always; the GPU picture only when the record holds GPU
    telemetry (``log`` says why it is left out otherwise). An anchor record's runs are drawn
    per side. An ``lr_find`` record is refused: its curve is the CSV/PNG written beside it.
    """
    if not matplotlib_available():
        raise SpeedrunError(_MISSING_MATPLOTLIB)
    if record.get("kind") == "lr_find":
        files = ((record.get("lr_find") or {}).get("files") or {})
        beside = ", ".join(name for name in (files.get("csv"), files.get("png")) if name) or "its CSV"
        raise SpeedrunError(f"an lr_find record has no runs to plot; its loss curve is {beside}, written beside it")
    out = check_output(out_dir, flag="--out-dir", folder=True)
    paths = _fresh_paths(out, prefix or default_prefix(record))
    drawers: dict[str, Callable[[Any, dict], None]] = {"accuracy": _draw_accuracy, "schedule": _draw_schedule,
                                                         "gpu": _draw_gpu}
    written = []
    for name, path in zip(PLOT_NAMES, paths):
        if name == "gpu" and not _telemetry_runs(record):
            log(f"no GPU picture: {_no_telemetry_reason(record)}")
            continue
        write_figure(path, functools.partial(_draw_with, drawers[name], record), flag="--out-dir")
        written.append(path)
    return written


def _all_runs(record: dict) -> list[tuple[str, dict]]:
    """``(label prefix, run)`` for every run: an anchor record's per side."""
    sides = record.get("sides") if record.get("kind") == "anchor" else None
    if isinstance(sides, list) and sides:
        return [(f"{side.get('label', '?')}: ", run) for side in sides if isinstance(side, dict)
                for run in side.get("runs", []) if isinstance(run, dict)]
    return [("", run) for run in record.get("runs", []) if isinstance(run, dict)]


def _telemetry_runs(record: dict) -> list[tuple[str, dict]]:
    return [(label, r) for label, r in _all_runs(record) if (r.get("nvml") or {}).get("samples")]


def _no_telemetry_reason(record: dict) -> str:
    nvml = record.get("nvml") or {}
    reason = nvml.get("reason") or next(
        ((r.get("nvml") or {}).get("reason") for _, r in _all_runs(record) if (r.get("nvml") or {}).get("reason")),
        None)
    return "the record holds no GPU telemetry" + (f" ({reason})" if reason else " (NVML recorded no samples)")


def _draw_with(draw: Callable[[Any, dict], None], record: dict, fig: Any) -> None:
    draw(fig, record)


def default_prefix(record: dict) -> str:
    """``<kind>-<recipe>-<created stamp>``, filesystem-safe."""
    stamp = re.sub(r"[^0-9T]", "", str(record.get("created", ""))[:19])
    return _safe(f"{record.get('kind', 'record')}-{record.get('recipe', 'recipe')}-{stamp}".rstrip("-"))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text) or "record"


def _fresh_paths(out: Path, prefix: str) -> list[Path]:
    """The three file names, with one shared numeric suffix if any of them already exists."""
    prefix = _safe(prefix)
    n = 0
    while True:
        stem = prefix if n == 0 else f"{prefix}-{n}"
        paths = [out / f"{stem}-{name}.png" for name in PLOT_NAMES]
        if not any(p.exists() for p in paths):
            return paths
        n += 1


def _title(record: dict, what: str) -> str:
    note = completeness_note(record)
    return (f"{record.get('recipe', '?')}: {what}\n{gpu_label(record)} · {str(record.get('created', ''))[:19]}"
            + (f" · {note}" if note else ""))


def _say(ax: Any, text: str) -> None:
    """Put a message where data would be, for pictures of something the record lacks."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _draw_accuracy(fig: Any, record: dict) -> None:
    ax = fig.add_subplot()
    ax.set_title(_title(record, "test accuracy over wall time"))
    target = record.get("target")
    drawn = 0
    for side, run in _all_runs(record):
        points = [(_num(e.get("elapsed_s")), _num(e.get("test_acc"))) for e in run.get("epochs", [])]
        points = [(t, 100 * a) for t, a in points if not math.isnan(t) and not math.isnan(a)]
        if not points:
            continue
        drawn += 1
        status = "" if run.get("status") == "ok" else f" ({run.get('status')})"
        line, = ax.plot(*zip(*points), marker="o", markersize=3, linewidth=1.2, label=f"{side}seed {run.get('seed')}{status}")
        ttt = run.get("time_to_target_s")
        if run.get("reached_target") and isinstance(ttt, (int, float)):
            # Mark the evaluation that established the target, on the curve itself.
            hit = min(points, key=lambda p: abs(p[0] - ttt))
            ax.plot([hit[0]], [hit[1]], marker="x", markersize=10, markeredgewidth=2, color=line.get_color())
    if not drawn:
        _say(ax, "no evaluated epochs in this record (no test_acc values)")
        return
    if isinstance(target, (int, float)):
        ax.axhline(100 * target, color="black", linestyle="--", linewidth=1, label=f"target {100 * target:.2f}%")
    ax.set_xlabel("wall time since start of the timed part (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", ncol=2 if drawn > 6 else 1, title="x = first evaluation at target", title_fontsize=8)


def _draw_schedule(fig: Any, record: dict) -> None:
    ax = fig.add_subplot()
    schedule = record.get("schedule") or {}
    name = schedule.get("name")
    ax.set_title(_title(record, f"schedule '{schedule_label(record)}'" if name else "schedule"))
    lr = [_num(v) for v in schedule.get("lr") or []]
    if not lr:
        _say(ax, "no learning-rate schedule in this record")
        return
    steps = range(len(lr))
    ax.plot(steps, lr, color="tab:blue", linewidth=1.5, label="learning rate")
    ax.set_xlabel("optimizer step (faint vertical lines: epoch boundaries)")
    ax.set_ylabel("learning rate", color="tab:blue")
    ax.tick_params(axis="y", labelcolor="tab:blue")
    per_epoch = schedule.get("steps_per_epoch")
    if isinstance(per_epoch, int) and per_epoch > 0 and len(lr) // per_epoch <= 100:
        for boundary in range(per_epoch, len(lr), per_epoch):
            ax.axvline(boundary, color="grey", alpha=0.25, linewidth=0.8)
    ax.grid(alpha=0.3, axis="y")
    handles = ax.get_lines()[:1]
    momentum = [_num(v) for v in schedule.get("momentum") or []]
    label = "momentum"
    constant = _constant_momentum(record)
    if not momentum and constant is not None:
        momentum, label = [constant] * len(lr), f"momentum {constant:g} (constant: optimizer config)"
    muon = _muon_momentum(record)
    if momentum:
        ax2 = ax.twinx()
        handles += ax2.plot(range(len(momentum)), momentum, color="tab:orange", linewidth=1.5, linestyle="-.", label=label)
        if muon is not None:       # Muon's filters have their own (constant) momentum beside the SGD groups'
            handles += ax2.plot(range(len(lr)), [muon] * len(lr), color="tab:red", linewidth=1.5, linestyle=":",
                                label=f"Muon momentum {muon:g} (filters; the line above: the SGD groups)")
            ax2.set_ylim(0, max(1.0, max([*momentum, muon]) * 1.1))
        if constant is not None and label != "momentum":
            ax2.set_ylim(0, max(1.0, constant * 1.1))
        ax2.set_ylabel("momentum", color="tab:orange")
        ax2.tick_params(axis="y", labelcolor="tab:orange")
    # Below the axes, so it never covers either curve whatever the schedule's shape.
    fig.legend(handles=handles, labels=[h.get_label() for h in handles], fontsize=8, loc="outside lower center", ncols=2)


def _constant_momentum(record: dict) -> float | None:
    """The optimizer's fixed momentum when the schedule does not vary it (config.recipe.optimizer)."""
    optimizer = ((record.get("config") or {}).get("recipe") or {}).get("optimizer") or {}
    value = optimizer.get("momentum")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _muon_momentum(record: dict) -> float | None:
    """Muon's own momentum, when the record's optimizer is Muon (its filters do not use the SGD groups')."""
    optimizer = ((record.get("config") or {}).get("recipe") or {}).get("optimizer") or {}
    value = optimizer.get("muon_momentum") if optimizer.get("name") == "muon" else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _draw_gpu(fig: Any, record: dict) -> None:
    runs = _telemetry_runs(record)
    util_ax, power_ax = fig.subplots(2, 1, sharex=True)
    util_ax.set_title(_title(record, "GPU utilization and power over the timed part"))
    for side, run in runs:
        samples = [[_num(v) for v in s[:5]] for s in run["nvml"]["samples"] if isinstance(s, list) and len(s) >= 4]
        t = [s[0] for s in samples]
        label = f"{side}seed {run.get('seed')}"
        util_ax.plot(t, [s[1] for s in samples], linewidth=1, label=label)
        power_ax.plot(t, [s[3] for s in samples], linewidth=1, label=label)
    util_ax.set_ylabel("utilization (%)")
    util_ax.set_ylim(0, 105)
    power_ax.set_ylabel("power (W)")
    power_ax.set_xlabel("time since the start of the run's timed part (s)")
    for ax in (util_ax, power_ax):
        ax.grid(alpha=0.3)
    util_ax.legend(fontsize=8, loc="lower right", ncol=2 if len(runs) > 6 else 1)
