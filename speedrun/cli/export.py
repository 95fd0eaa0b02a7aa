"""``speedrun export RECORD``: the record as a flat per-epoch CSV, or as DAWNBench's submission files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from speedrun.cli import add_options, options_from
from speedrun.results.export import ExportOptions, export_record
from speedrun.results.records import read_record

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="csv: one row per epoch of every run, the record's identity on each row. "
                                          "dawnbench: one DAWNBench entry per run, <record>-seed<k>.json and its "
                                          "same-named epoch/hours/top1Accuracy .tsv.")
    p.add_argument("record", metavar="RECORD", help="a result record (JSON)")
    p.set_defaults(handler=run, options=add_options(p, ExportOptions, "options"))
    return p


def run(args: argparse.Namespace) -> int:
    options = options_from(args, args.options)
    path = Path(args.record)
    record = read_record(path)
    default = path.with_name(f"{path.stem}-epochs.csv" if options.format == "csv" else f"{path.stem}-dawnbench")
    for written in export_record(record, options.format, options.out or default, stem=path.stem, force=options.force,
                                 log=lambda line: print(line, file=sys.stderr)):
        print(written)
    return 0
