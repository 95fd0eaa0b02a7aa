"""``python -m speedrun``: a thin layer over the library.

Each command lives in its own module here with ``register(subparsers, command)`` and a handler.
Only the chosen command's module is imported, so the record commands (``leaderboard``,
``compare``, ``plot``) start without importing torch; ``speedrun --help`` imports none. With no
command, ``train`` is meant (``python -m speedrun --target 0.94``). User errors
(:class:`~speedrun.errors.SpeedrunError`, and ``ValueError`` from validating configs) print one
line and exit 2; set ``SPEEDRUN_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from speedrun import __version__
from speedrun.errors import SettingError, SpeedrunError
from speedrun.flags import Section, add_section


class CommandLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other user error here, exit code 2,
    and that takes no abbreviated flags (``--ou`` is not ``--out``: a typo never picks a setting)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"speedrun: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Command:
    """A subcommand: its name on the command line, the module that implements it, its one-line help."""

    name: str
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command("train", "speedrun.cli.train", "train seeded runs to a target accuracy (the default command)"),
    Command("schedule", "speedrun.cli.schedule", "draw a learning-rate (and momentum) schedule as PNG, or CSV"),
    Command("lr-find", "speedrun.cli.lr_find",
            "LR range test: loss against a rising learning rate, and suggested bounds"),
    Command("leaderboard", "speedrun.cli.leaderboard",
            "rank result records by mean time-to-target, one table per GPU model"),
    Command("compare", "speedrun.cli.compare",
            "compare two records: time and accuracy differences with 95%% CIs and Welch p-values"),
    Command("export", "speedrun.cli.export",
            "write a record as a flat per-epoch CSV, or as DAWNBench's submission files"),
    Command("plot", "speedrun.cli.plot",
            "draw a record's accuracy curves, lr/momentum schedule and GPU telemetry as PNGs"),
    Command("anchor", "speedrun.cli.anchor",
            "time our fast recipe against a published speedrun (airbench94) on the same GPU and data"),
    Command("profile", "speedrun.cli.profile", "show where one training epoch's time goes (torch.profiler)"),
    Command("flops", "speedrun.cli.flops", "estimate the FLOPs of a recipe's run over its full budget"),
    Command("sweep", "speedrun.cli.sweep",
            "run a spec of variants x seeds (and tuning) across GPUs on Ray, resumably; rank them"),
)
DEFAULT_COMMAND = "train"
_BY_NAME = {c.name: c for c in COMMANDS}


def command(name: str) -> Command:
    """The registered command called ``name`` (KeyError for another name)."""
    return _BY_NAME[name]


def add_options(parser: argparse.ArgumentParser, cls: type, title: str = "options") -> Section:
    """One flag per declared setting of the options dataclass ``cls`` (see :mod:`speedrun.flags`)."""
    section = Section(cls.__name__, (cls,), title)
    add_section(parser, section, help_defaults=True)
    return section


def options_from(args: argparse.Namespace, section: Section) -> Any:
    """The options the flags of ``section`` give (its defaults where not given)."""
    return section.build(section.classes[0], **section.given(args))


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``selected``'s full arguments; every other command is listed by name only.

    The selected command's module is imported (an import error is an error, never a silently
    missing command); the others are not, which is what keeps a record command free of torch.
    """
    parser = CommandLineParser(
        prog="speedrun",
        description="Train CIFAR-10 to a target accuracy on one GPU, compare schedules, rank result records.",
        epilog=f"With no COMMAND, '{DEFAULT_COMMAND}' is meant: python -m speedrun --target 0.94")
    parser.add_argument("--version", action="version", version=f"speedrun {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandLineParser)
    for entry in COMMANDS:
        if entry.name == selected:
            importlib.import_module(entry.module).register(subparsers, entry)
        else:
            subparsers.add_parser(entry.name, help=entry.help, add_help=False)
    return parser


def selected_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs: its first word if that names one, None for top-level help or
    version, else the default command (whose flags then start the line)."""
    if argv and argv[0] in _BY_NAME:
        return argv[0]
    if argv and argv[0] in ("-h", "--help", "--version"):
        return None
    return DEFAULT_COMMAND


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; SIGTERM is taken as Ctrl-C while it runs."""
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    except KeyboardInterrupt:             # while the command's modules were still being imported
        print("speedrun: interrupted before any work", file=sys.stderr)
        return 143 if _terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    global _terminated
    _terminated = False
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = selected_command(argv)
    if selected is not None and (not argv or argv[0] != selected):
        argv = [selected, *argv]
    try:
        args = build_parser(selected).parse_args(argv)
    except SystemExit as stop:            # --help, --version, or a bad flag (already said in one line)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return int(args.handler(args) or 0)
    except (SpeedrunError, ValueError) as e:
        if os.environ.get("SPEEDRUN_DEBUG"):
            raise
        flags = getattr(args, "setting_flags", None) or {}
        text = e.render(lambda name: flags.get(name, name)) if isinstance(e, SettingError) else str(e)
        message = " ".join(text.split())
        print(f"speedrun: error: {message}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        how = "SIGTERM" if _terminated else "Ctrl-C"
        print(f"speedrun: interrupted ({how}); any record written so far is kept and says so", file=sys.stderr)
        return 143 if _terminated else 130


_terminated = False


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a command as Ctrl-C does: records are kept and say they were interrupted."""
    global _terminated
    _terminated = True
    raise KeyboardInterrupt
