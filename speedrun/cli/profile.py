"""``speedrun profile``: a torch.profiler breakdown of one warmed-up epoch of a recipe."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.bench.harness import prepare_run, rehearse
from speedrun.bench.profiling import profile_epoch
from speedrun.cli.harness_flags import add_harness_arguments, options_from_args
from speedrun.cli.recipe_flags import add_recipe_arguments, recipe_from_args
from speedrun.cli.values import whole_number
from speedrun.outputs import write_new_text_file

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="Warm up a recipe, then profile one training epoch and one evaluation, "
                                          "and print the ops by self time (device time on a GPU).")
    add_harness_arguments(p, default_recipe="fast94")
    add_recipe_arguments(p)
    p.add_argument("--rows", type=whole_number, default=25, help="ops to list (default: 25)")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the table to a new Markdown FILE")
    p.add_argument("--trace", default=None, metavar="FILE", help="also save a Chrome trace (chrome://tracing)")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.rows < 1:
        raise ValueError(f"--rows must be at least 1, got {args.rows}")
    prepared = prepare_run(recipe_from_args(args), options_from_args(args), log=lambda m: print(m, file=sys.stderr))
    rehearse(prepared, log=lambda m: print(m, file=sys.stderr))
    report = profile_epoch(prepared, seed=args.seed, trace_path=args.trace)
    text = report.to_markdown(args.rows)
    print(text, end="")
    if args.markdown:
        write_new_text_file(args.markdown, text, flag="--markdown")
    return 0
