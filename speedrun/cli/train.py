"""``speedrun [train]``: train seeded runs of a recipe to a target accuracy and write a record."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.cli.extension_flags import (
    AUTO,
    add_extension_arguments,
    apply_training_flags,
)
from speedrun.cli.harness_flags import add_harness_arguments, options_from_args
from speedrun.cli.recipe_flags import add_recipe_arguments, recipe_from_args
from speedrun.data.cifar10 import Cifar10
from speedrun.data.loading import load_cifar10
from speedrun.errors import SettingError, SpeedrunError
from speedrun.recipes import Recipe

if TYPE_CHECKING:
    from speedrun.cli import Command


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag of ``speedrun train`` (also what a sweep spec's flags are checked against)."""
    add_harness_arguments(p)
    add_recipe_arguments(p)
    add_extension_arguments(p)


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="Train N seeded runs of a recipe on CIFAR-10, report time-to-accuracy, "
                                          "and write one JSON record.")
    add_train_arguments(p)
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


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise SpeedrunError(message)


@dataclass(frozen=True)
class TrainSettings:
    """What a train command line means: the recipe it trains and the harness options."""

    recipe: Recipe
    options: HarnessOptions
    flags: tuple[str, ...]


def settings_from_flags(flags: Sequence[str], *, data: Cifar10 | None = None, resolve_auto: bool = True,
                        log: Callable[[str], None] = print) -> TrainSettings:
    """Parse ``speedrun train`` flags into settings, as the command would, raising
    :class:`SpeedrunError` with the flag named instead of exiting.

    This is how a sweep checks each run's flags before anything runs (``resolve_auto=False``:
    ``--max-lr auto`` is checked, not resolved) and how its workers build the run they train.
    """
    parser = _RaisingParser(prog="speedrun train", add_help=False)
    add_train_arguments(parser)
    args = parser.parse_args(list(flags))
    names = parser.get_default("setting_flags") or {}
    try:
        recipe = recipe_from_args(args)
        options = options_from_args(args)
        recipe = apply_training_flags(args, recipe, options, data=data, log=log, resolve_auto=resolve_auto)
    except SettingError as e:
        raise SpeedrunError(" ".join(e.render(lambda name: names.get(name, name)).split())) from None
    except ValueError as e:
        raise SpeedrunError(str(e)) from None
    return TrainSettings(recipe, options, tuple(flags))
