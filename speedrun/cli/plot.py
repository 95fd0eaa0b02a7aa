"""``speedrun plot RECORD --out-dir DIR``: accuracy, schedule and GPU-telemetry PNGs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from speedrun.cli import add_options, options_from
from speedrun.results.plots import PlotOptions, plot_record
from speedrun.results.records import read_record

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """Add the ``plot`` subcommand; its handler is also set as ``args.handler``."""
    p = subparsers.add_parser(command.name, help=command.help,
        description="Write <record>-accuracy.png, <record>-schedule.png and <record>-gpu.png "
        "(needs matplotlib: pip install 'speedrun[plot]'). Existing files are never overwritten.",
    )
    p.add_argument("record", metavar="RECORD", help="a result record (JSON)")
    p.set_defaults(handler=run, options=add_options(p, PlotOptions, "options"))
    return p


def run(args: argparse.Namespace) -> int:
    """Read the record, plot it, print the paths written."""
    record_path = Path(args.record)
    record = read_record(record_path)
    out_dir = options_from(args, args.options).out_dir
    out_dir = Path(out_dir) if out_dir else record_path.parent
    for path in plot_record(record, out_dir, prefix=record_path.stem, log=lambda line: print(line, file=sys.stderr)):
        print(path)
    return 0
