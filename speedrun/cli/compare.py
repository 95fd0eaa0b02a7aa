"""``speedrun compare A B``: is record B faster than A, and did accuracy change?"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from speedrun.cli import add_options, options_from
from speedrun.errors import SpeedrunError
from speedrun.results.compare import CompareOptions, compare_records
from speedrun.results.records import read_record
from speedrun.results.variants import read_variant_pair

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand; its handler is also set as ``args.handler``."""
    p = subparsers.add_parser(command.name, help=command.help,
        description="Compare record B against baseline A with Welch's t-test on the runs' raw values; "
                    "or, given a sweep's folder, its variant B against its variant A (compare DIR A B).",
    )
    p.add_argument("a", metavar="A", help="baseline record (JSON), or a sweep's folder")
    p.add_argument("b", metavar="B", help="record to compare against A (JSON), or the baseline variant's name")
    p.add_argument("c", metavar="C", nargs="?", help="with a sweep's folder: the variant compared against B")
    p.set_defaults(handler=run, options=add_options(p, CompareOptions, "options"))
    return p


def run(args: argparse.Namespace) -> int:
    """Read both records (RecordError names a bad one), compare, print."""
    if Path(args.a).is_dir():
        if args.c is None:
            raise SpeedrunError(f"compare {args.a}: a folder needs two variant names: compare DIR VARIANT_A VARIANT_B")
        a, b = read_variant_pair(args.a, args.b, args.c)
    elif args.c is not None:
        raise SpeedrunError(f"compare: a third name ({args.c}) is only for a sweep's folder; {args.a} is not a folder")
    else:
        a = {**read_record(args.a), "source_file": str(args.a)}
        b = {**read_record(args.b), "source_file": str(args.b)}
    comparison = compare_records(a, b)
    sys.stdout.write(comparison.to_json() if options_from(args, args.options).format == "json" else comparison.to_text())
    return 0
