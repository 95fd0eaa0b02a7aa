"""``speedrun lr-find``: the learning-rate range test for a recipe, with suggested bounds."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.bench.lr_find import run_lr_find
from speedrun.cli import add_options, options_from
from speedrun.overrides import EXTENSIONS, SCHEDULE, TRAIN_SECTIONS, add_train_flags, train_settings
from speedrun.training.range_test import LRFinderConfig

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
        description="Train a recipe's model while the learning rate rises from --start-lr to --end-lr, stop when "
                    "the smoothed loss diverges, restore the model, and suggest one-cycle and cyclical bounds. "
                    "Writes a record (kind lr_find) with the curve as CSV (and PNG with matplotlib) beside it.")
    add_train_flags(p, sections=[s for s in TRAIN_SECTIONS if s is not SCHEDULE and s not in EXTENSIONS])
    p.set_defaults(handler=run, finder=add_options(p, LRFinderConfig, "range test"))
    return p


def run(args: argparse.Namespace) -> int:
    settings = train_settings(args)
    run_lr_find(settings.recipe, settings.options, options_from(args, args.finder),
                command=["speedrun", *sys.argv[1:]])
    return 0
