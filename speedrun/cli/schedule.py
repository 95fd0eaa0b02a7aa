"""``speedrun schedule``: build any lr policy for a given run length and draw it (PNG or CSV)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from speedrun.cli import add_options, options_from
from speedrun.data.cifar10 import CIFAR10_TRAIN_IMAGES
from speedrun.outputs import check_output
from speedrun.overrides import SCHEDULE, SOURCE, add_train_flags, base_recipe, schedule_of
from speedrun.schedules.plot import ScheduleView, write_schedule

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
        description="Build a schedule policy for --epochs x --steps-per-epoch steps and print its summary; "
                    "--plot PATH draws lr (and momentum) over steps as a PNG (CSV step,lr,momentum for a .csv "
                    "path or without matplotlib). Without --schedule, the recipe's schedule is drawn.")
    add_train_flags(p, sections=(SOURCE, SCHEDULE))
    p.set_defaults(handler=run, view=add_options(p, ScheduleView, "run length and output"))
    return p


def run(args: argparse.Namespace) -> int:
    view = options_from(args, args.view)
    if view.plot:
        check_output(view.plot, flag="--plot", force=view.force)
    recipe, _ = base_recipe(args)
    train = recipe.train if view.epochs is None else dataclasses.replace(recipe.train, epochs=view.epochs)
    steps_per_epoch = view.steps_per_epoch or max(1, CIFAR10_TRAIN_IMAGES // recipe.train.batch_size)
    spec = schedule_of(recipe, args)
    schedule = SCHEDULE.build(spec.build, total_steps=train.total_steps(steps_per_epoch),
                              steps_per_epoch=steps_per_epoch)
    d = schedule.describe()
    print(f"{d['name']}: {d['steps']} steps ({train.epochs:g} epochs of {steps_per_epoch}), interval={d['interval']}")
    print(f"lr first {d['lr_first']:.6g}  peak {d['lr_peak']:.6g}  last {d['lr_last']:.6g}")
    if schedule.momentum is not None:
        print(f"momentum {float(schedule.momentum.min()):.4g} .. {float(schedule.momentum.max()):.4g}")
    if view.plot:
        path = write_schedule(schedule, view.plot, force=view.force)
        if path.suffix.lower() != Path(view.plot).suffix.lower():
            print(f"matplotlib is not installed: wrote CSV instead of {Path(view.plot).name}")
        print(path)
    return 0
