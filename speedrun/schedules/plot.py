"""A schedule's per-step lr (and momentum) as a PNG, or as CSV ``step,lr,momentum``.

Looking at a policy before training with it catches the classic mistakes (a cycle length in
epochs read as steps, a one-cycle peak in the wrong place) for the price of a picture.
"""
from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedrun.errors import SpeedrunError
from speedrun.outputs import (
    check_output,
    matplotlib_available,
    write_csv,
    write_figure,
)
from speedrun.schedules import Schedule
from speedrun.settings import check, setting

CSV_HEADER = ("step", "lr", "momentum")


@dataclass(frozen=True)
class ScheduleView:
    """The run ``speedrun schedule`` draws a schedule for, and where the drawing goes."""

    epochs: float | None = setting(None, "run length in epochs (default: the recipe's)", low=0, low_open=True,
                                   high=10_000)
    steps_per_epoch: int | None = setting(None, "optimizer steps per epoch (default: 50000 // the recipe's batch "
                                                "size)", low=1, high=10**6)
    plot: str | None = setting(None, "write the curve here (.png, or .csv)", metavar="PATH")
    force: bool = setting(False, "replace an existing --plot file", false_flag=None)

    def __post_init__(self) -> None:
        check(self)



def schedule_rows(schedule: Schedule) -> list[tuple[int, float, float | None]]:
    """``(step, lr, momentum)`` per optimizer step; momentum is None where the policy leaves it alone."""
    lr = schedule.lr.detach().cpu().double().tolist()
    momentum = None if schedule.momentum is None else schedule.momentum.detach().cpu().double().tolist()
    return [(i, v, None if momentum is None else momentum[i]) for i, v in enumerate(lr)]


def write_schedule(schedule: Schedule, path: str | os.PathLike, *, force: bool = False, title: str | None = None,
                   flag: str = "--plot") -> Path:
    """Write ``schedule`` to ``path``: a PNG, or CSV when the path ends in ``.csv`` or matplotlib is
    missing (then ``.csv`` replaces the suffix). Returns the path written; never overwrites unless ``force``."""
    path = check_output(path, force=force, flag=flag)
    if path.suffix.lower() not in (".png", ".csv"):
        raise SpeedrunError(f"{flag} {path}: name a .png (a picture) or a .csv (the values) file")
    if path.suffix.lower() != ".csv" and not matplotlib_available():
        path = check_output(path.with_suffix(".csv"), force=force, flag=flag)
    if path.suffix.lower() == ".csv":
        return write_csv(path, CSV_HEADER, schedule_rows(schedule), replace=force, flag=flag)
    return write_figure(path, lambda fig: draw_schedule(fig, schedule, title), replace=force, flag=flag)


def describe_params(schedule: Schedule) -> str:
    """The policy's parameters (those set) for a title, wrapped to fit the figure's width."""
    parts = []
    for key, value in schedule.params.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list) and len(value) > 4:
            value = f"[{len(value)} items]"
        parts.append(f"{key}={value}")
    return textwrap.fill(", ".join(parts), width=100)


def draw_schedule(fig: Any, schedule: Schedule, title: str | None = None) -> None:
    """lr over optimizer steps (left axis), momentum on a second axis, epoch boundaries faint."""
    ax = fig.add_subplot()
    rows = schedule_rows(schedule)
    steps = [r[0] for r in rows]
    handles = ax.plot(steps, [r[1] for r in rows], color="tab:blue", linewidth=1.5, label="learning rate")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate", color="tab:blue")
    ax.tick_params(axis="y", labelcolor="tab:blue")
    ax.set_xlim(0, max(1, len(steps) - 1))
    per_epoch = schedule.steps_per_epoch
    if per_epoch and len(steps) // per_epoch <= 100:
        for boundary in range(per_epoch, len(steps), per_epoch):
            ax.axvline(boundary, color="grey", alpha=0.25, linewidth=0.8)
    ax.grid(alpha=0.3, axis="y")
    if schedule.momentum is not None:
        ax2 = ax.twinx()
        handles += ax2.plot(steps, [r[2] for r in rows], color="tab:orange", linewidth=1.5, linestyle="-.",
                            label="momentum")
        ax2.set_ylabel("momentum", color="tab:orange")
        ax2.tick_params(axis="y", labelcolor="tab:orange")
    epochs = f", {len(steps) / per_epoch:g} epochs of {per_epoch} steps" if per_epoch else ""
    ax.set_title(title or f"{schedule.name} (interval={schedule.interval}{epochs})\n{describe_params(schedule)}",
                 fontsize=10)
    # Below the axes: inside, it would hide part of one of the two curves.
    fig.legend(handles=handles, labels=[h.get_label() for h in handles], fontsize=8, loc="outside lower center",
               ncols=len(handles))
