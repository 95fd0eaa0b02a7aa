"""``python -m speedrun``: a thin layer over the library.

Each subcommand lives in ``speedrun.commands.<name>`` with ``register(subparsers)`` and a
handler. With no subcommand, ``train`` is meant (``python -m speedrun --target 0.94``).
User errors (:class:`~speedrun.errors.SpeedrunError`, and ``ValueError`` from validating
configs) print one line and exit 2; set ``SPEEDRUN_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from speedrun.errors import SpeedrunError

COMMANDS = ("train", "schedule", "lr_find", "leaderboard", "compare", "plot", "anchor", "profile")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speedrun",
        description="Train CIFAR-10 to a target accuracy on one GPU, compare schedules, rank result records.",
        epilog="With no COMMAND, 'train' is meant: python -m speedrun --target 0.94")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"speedrun.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"speedrun.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    if not argv or (argv[0] not in known and argv[0] not in ("-h", "--help")):
        argv = ["train", *argv]
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (SpeedrunError, ValueError) as e:
        if os.environ.get("SPEEDRUN_DEBUG"):
            raise
        message = " ".join(str(e).split())
        print(f"speedrun: error: {message}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print("speedrun: interrupted", file=sys.stderr)
        return 130
