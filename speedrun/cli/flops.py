"""``speedrun flops``: the arithmetic a recipe's run does over its full budget, as airbench states it."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from speedrun.cli.recipe_flags import add_recipe_arguments, recipe_from_args
from speedrun.recipes import RECIPES

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="Count the FLOPs of a recipe's training steps and evaluations on the meta "
                                          "device (no data, no GPU, under a second) and scale them to its full budget "
                                          "on the whole CIFAR-10. Every training record stores the same estimate.")
    g = p.add_argument_group("recipe")
    g.add_argument("--recipe", default=None,
                   help=f"named recipe: {', '.join(RECIPES)}, or a fast94 ablation (default: every named recipe)")
    g.add_argument("--recipe-from", default=None, metavar="RECORD",
                   help="the recipe a record ran (its every setting), instead of --recipe; flags still override")
    add_recipe_arguments(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speedrun.bench.flops import estimate_flops

    if args.recipe is None and args.recipe_from is None:
        names = list(RECIPES)
        recipes = [recipe_from_args(argparse.Namespace(**{**vars(args), "recipe": name})) for name in names]
    else:
        recipes = [recipe_from_args(args)]
    for recipe in recipes:
        print(f"{recipe.name}: {estimate_flops(recipe).describe()}")
    return 0
