"""``speedrun flops``: the arithmetic a recipe's run does over its full budget, as airbench states it."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from speedrun.overrides import HARNESS, SOURCE, TRAIN_SECTIONS, add_train_flags, train_settings
from speedrun.recipes import RECIPES

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="Count the FLOPs of a recipe's training steps and evaluations on the meta "
                                          "device (no data, no GPU) and scale them to its full budget on the whole "
                                          "CIFAR-10 (default: every named recipe). Every training record stores the "
                                          "same estimate.")
    add_train_flags(p, default_recipe=None, sections=[s for s in TRAIN_SECTIONS if s is not HARNESS])
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speedrun.analysis.flops import estimate_flops

    chosen = getattr(args, SOURCE.dest("recipe")) or getattr(args, SOURCE.dest("recipe_from"))
    for name in [None] if chosen else list(RECIPES):
        named = args if name is None else argparse.Namespace(**{**vars(args), SOURCE.dest("recipe"): name})
        recipe = train_settings(named).recipe
        print(f"{recipe.name}: {estimate_flops(recipe).describe()}")
    return 0
