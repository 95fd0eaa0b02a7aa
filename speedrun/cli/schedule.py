"""``speedrun schedule``: build any lr policy for a given run length and draw it (PNG or CSV)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from speedrun.cli.extension_flags import schedule_spec_from_args
from speedrun.cli.schedule_flags import add_schedule_arguments
from speedrun.cli.values import whole_number
from speedrun.data.cifar10 import CIFAR10_TRAIN_IMAGES
from speedrun.recipes import RECIPES, get_recipe
from speedrun.schedules.plot import write_schedule

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
        description="Build a schedule policy for --epochs x --steps-per-epoch steps and print its summary; "
                    "--plot PATH draws lr (and momentum) over steps as a PNG (CSV step,lr,momentum for a .csv "
                    "path or without matplotlib). Without --schedule, the recipe's schedule is drawn.")
    p.add_argument("--recipe", default="classic", help=f"recipe whose schedule is drawn without --schedule: "
                                                       f"{', '.join(RECIPES)} (default: classic)")
    p.add_argument("--epochs", type=whole_number, default=None, help="run length in epochs (default: the recipe's)")
    p.add_argument("--steps-per-epoch", type=whole_number, default=None,
                   help="optimizer steps per epoch (default: 50000 // the recipe's batch size)")
    p.add_argument("--plot", default=None, metavar="PATH", help="write the curve here (.png, or .csv)")
    p.add_argument("--force", action="store_true", help="replace an existing --plot file")
    add_schedule_arguments(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    recipe = get_recipe(args.recipe)
    epochs = recipe.train.epochs if args.epochs is None else args.epochs
    steps_per_epoch = (CIFAR10_TRAIN_IMAGES // recipe.train.batch_size if args.steps_per_epoch is None
                       else args.steps_per_epoch)
    for flag, value in (("--epochs", epochs), ("--steps-per-epoch", steps_per_epoch)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    spec = schedule_spec_from_args(args, recipe, max_lr=args.max_lr)
    train = recipe.train if args.epochs is None else dataclasses.replace(recipe.train, epochs=args.epochs)
    schedule = spec.build(train.total_steps(steps_per_epoch), steps_per_epoch)
    d = schedule.describe()
    print(f"{d['name']}: {d['steps']} steps ({epochs} epochs of {steps_per_epoch}), interval={d['interval']}")
    print(f"lr first {d['lr_first']:.6g}  peak {d['lr_peak']:.6g}  last {d['lr_last']:.6g}")
    if schedule.momentum is not None:
        print(f"momentum {float(schedule.momentum.min()):.4g} .. {float(schedule.momentum.max()):.4g}")
    if args.plot:
        path = write_schedule(schedule, args.plot, force=args.force)
        if path.suffix.lower() != Path(args.plot).suffix.lower():
            print(f"matplotlib is not installed: wrote CSV instead of {Path(args.plot).name}")
        print(path)
    return 0
