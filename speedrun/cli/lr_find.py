"""``speedrun lr-find``: the learning-rate range test for a recipe, with suggested bounds."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.bench.lr_find import run_lr_find
from speedrun.cli.harness_flags import add_harness_arguments, options_from_args
from speedrun.cli.recipe_flags import add_recipe_arguments, recipe_from_args
from speedrun.cli.values import finite_float, whole_number
from speedrun.training.lr_range_test import LR_RAMPS, LRFinderConfig

_FINDER_FLAGS = ("start_lr", "end_lr", "num_steps", "ramp", "beta", "diverge_factor")

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
        description="Train a recipe's model while the learning rate rises from --start-lr to --end-lr, stop when "
                    "the smoothed loss diverges, restore the model, and suggest one-cycle and cyclical bounds. "
                    "Writes a record (kind lr_find) with the curve as CSV (and PNG with matplotlib) beside it.")
    add_harness_arguments(p)
    add_recipe_arguments(p)
    d = LRFinderConfig()
    g = p.add_argument_group("range test")
    g.add_argument("--start-lr", type=finite_float, default=None, help=f"first learning rate (default {d.start_lr:g})")
    g.add_argument("--end-lr", type=finite_float, default=None, help=f"last learning rate (default {d.end_lr:g})")
    g.add_argument("--num-steps", type=whole_number, default=None, help=f"steps from start to end (default {d.num_steps})")
    g.add_argument("--ramp", choices=LR_RAMPS, default=None, help="exponential (default) or linear rise")
    g.add_argument("--beta", type=finite_float, default=None, help=f"loss smoothing (default {d.beta})")
    g.add_argument("--diverge-factor", type=finite_float, default=None,
                   help=f"stop when the smoothed loss exceeds this x its minimum (default {d.diverge_factor:g})")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    config = LRFinderConfig(**{k: getattr(args, k) for k in _FINDER_FLAGS if getattr(args, k) is not None})
    run_lr_find(recipe_from_args(args), options_from_args(args), config, command=["speedrun", *sys.argv[1:]])
    return 0
