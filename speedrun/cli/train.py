"""``speedrun [train]``: train seeded runs of a recipe to a target accuracy and write a record."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.bench.harness import run_benchmark
from speedrun.cli.extension_flags import (
    AUTO,
    add_extension_arguments,
    apply_training_flags,
)
from speedrun.cli.harness_flags import add_harness_arguments, options_from_args
from speedrun.cli.recipe_flags import add_recipe_arguments, recipe_from_args
from speedrun.data.loading import load_cifar10

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="Train N seeded runs of a recipe on CIFAR-10, report time-to-accuracy, "
                                          "and write one JSON record.")
    add_harness_arguments(p)
    add_recipe_arguments(p)
    add_extension_arguments(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    options = options_from_args(args)
    # --max-lr auto runs the LR range test on the run's data first; load it once for both.
    data = load_cifar10(options.data_dir, download=options.download) if args.max_lr == AUTO else None
    recipe = apply_training_flags(args, recipe, options, data=data)
    run_benchmark(recipe, options, data=data, command=["speedrun", *sys.argv[1:]])
    return 0
