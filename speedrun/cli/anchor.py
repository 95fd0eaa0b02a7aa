"""``speedrun anchor airbench94 --runs N``: our fast recipe and a published speedrun, interleaved, one record."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.bench.airbench import ANCHORS
from speedrun.bench.anchor import run_anchor, train_images_of
from speedrun.bench.environment import pick_device
from speedrun.cli.harness_flags import add_harness_arguments, options_from_args
from speedrun.cli.recipe_flags import add_recipe_arguments, recipe_from_args

DEFAULT_RECIPE = "fast94"

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """Add the ``anchor`` subcommand; its handler is ``run``."""
    p = subparsers.add_parser(command.name, help=command.help,
        description="Interleave N seeded runs of a speedrun recipe (default fast94) with N runs of the anchor "
                    "on the same data and GPU, time both by the same rule, and write one 'anchor' record with "
                    "both distributions and the time ratio with its 95%% CI.",
    )
    p.add_argument("anchor", choices=sorted(ANCHORS), help="the published run to compare against")
    p.add_argument("--workdir", default=None,
                   help="folder for the anchor's cifar10/train.pt and test.pt (default: a temporary folder, removed after)")
    add_harness_arguments(p, default_recipe=DEFAULT_RECIPE)
    add_recipe_arguments(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Check the anchor can run here first (one clear line if not), then run the interleaved runs."""
    side = ANCHORS[args.anchor]()
    options = options_from_args(args)
    side.check(pick_device(args.device), train_images_of(options))
    recipe = recipe_from_args(args)
    run_anchor(recipe, side, options, command=["speedrun", *sys.argv[1:]], workdir=args.workdir)
    return 0
