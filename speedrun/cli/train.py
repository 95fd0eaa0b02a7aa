"""``speedrun [train]``: train seeded runs of a recipe to a target accuracy and write a record."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.bench.harness import run_benchmark
from speedrun.data.loading import load_cifar10
from speedrun.flags import AUTO
from speedrun.overrides import SCHEDULE, add_train_flags, train_settings

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="Train N seeded runs of a recipe on CIFAR-10, report time-to-accuracy, "
                                          "and write one JSON record.")
    add_train_flags(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    data = None
    if getattr(args, SCHEDULE.dest("max_lr"), None) == AUTO:      # the range test and the runs share the data
        settings = train_settings(args, resolve_auto=False)
        data = load_cifar10(settings.options.data_dir, download=settings.options.download)
    settings = train_settings(args, data=data)
    run_benchmark(settings.recipe, settings.options, data=data, command=["speedrun", *sys.argv[1:]])
    return 0
