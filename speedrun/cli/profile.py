"""``speedrun profile``: a torch.profiler breakdown of one warmed-up epoch of a recipe."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.analysis.profiling import ProfileOptions, profile_epoch
from speedrun.bench.harness import prepare_run, rehearse
from speedrun.cli import add_options, options_from
from speedrun.outputs import check_output, write_new_text_file
from speedrun.overrides import add_train_flags, train_settings

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="Warm up a recipe, then profile one training epoch and one evaluation, "
                                          "and print the ops by self time (device time on a GPU).")
    add_train_flags(p, default_recipe="fast94")
    p.set_defaults(handler=run, profile=add_options(p, ProfileOptions, "profile"))
    return p


def run(args: argparse.Namespace) -> int:
    options = options_from(args, args.profile)
    for flag, path in (("--markdown", options.markdown), ("--trace", options.trace)):
        if path is not None:
            check_output(path, flag=flag)
    settings = train_settings(args)
    prepared = prepare_run(settings.recipe, settings.options, log=lambda m: print(m, file=sys.stderr))
    rehearse(prepared, log=lambda m: print(m, file=sys.stderr))
    report = profile_epoch(prepared.trainer, prepared.lr, prepared.momentum, seed=settings.options.seed,
                           trace_path=options.trace)
    text = report.to_markdown(options.rows)
    print(text, end="")
    if options.markdown:
        write_new_text_file(options.markdown, text, flag="--markdown")
    return 0
