"""``speedrun compare A B``: is record B faster than A, and did accuracy change?"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.cli import add_options, options_from
from speedrun.results.compare import CompareOptions, compare_records
from speedrun.results.records import read_record

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand; its handler is also set as ``args.handler``."""
    p = subparsers.add_parser(command.name, help=command.help,
        description="Compare record B against baseline A with Welch's t-test on the runs' raw values.",
    )
    p.add_argument("a", metavar="A", help="baseline record (JSON)")
    p.add_argument("b", metavar="B", help="record to compare against A (JSON)")
    p.set_defaults(handler=run, options=add_options(p, CompareOptions, "options"))
    return p


def run(args: argparse.Namespace) -> int:
    """Read both records (RecordError names a bad one), compare, print."""
    a = {**read_record(args.a), "source_file": str(args.a)}
    b = {**read_record(args.b), "source_file": str(args.b)}
    comparison = compare_records(a, b)
    sys.stdout.write(comparison.to_json() if options_from(args, args.options).format == "json" else comparison.to_text())
    return 0
