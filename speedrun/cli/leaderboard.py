"""``speedrun leaderboard [PATHS...]``: rank records per GPU model by mean time-to-target."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.cli import add_options, options_from
from speedrun.outputs import check_output, write_new_text_file
from speedrun.results.leaderboard import LeaderboardOptions, build_leaderboard, load_records
from speedrun.results.records import DEFAULT_RESULTS_DIR
from speedrun.results.render import render
from speedrun.results.variants import select_variants

DEFAULT_PATHS = (DEFAULT_RESULTS_DIR,)  # where the harness writes records by default

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """Add the ``leaderboard`` subcommand; its handler is also set as ``args.handler``."""
    p = subparsers.add_parser(command.name, help=command.help,
        description="Rank result records by mean time-to-target among those whose mean accuracy "
        "meets the target, one table per GPU model and target. Unreadable files are skipped and named on stderr.",
    )
    p.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS), metavar="PATHS",
                   help=f"record files or folders searched for *.json (default: {DEFAULT_RESULTS_DIR}/, where runs write; "
                        f"results/ holds the curated ones)")
    p.set_defaults(handler=run, options=add_options(p, LeaderboardOptions, "options"))
    return p


def run(args: argparse.Namespace) -> int:
    """Load, rank, render; skipped files go to stderr, the table to stdout or ``--out``."""
    options = options_from(args, args.options)
    if options.out:
        check_output(options.out, flag="--out")
    records, problems = load_records(args.paths)
    if options.variants:
        records = select_variants(records, options.variants.split(","), flag="--variants", where=" ".join(args.paths))
    for problem in problems:
        print(f"speedrun leaderboard: {problem}", file=sys.stderr)
    text = render(build_leaderboard(records, target=options.target), options.format)
    if options.out:
        path = write_new_text_file(options.out, text)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
