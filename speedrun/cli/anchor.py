"""``speedrun anchor airbench94 --runs N``: our fast recipe and a published speedrun, interleaved, one record."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.bench.airbench import ANCHORS
from speedrun.bench.anchor import AnchorOptions, run_anchor, train_images_of
from speedrun.cli import add_options, options_from
from speedrun.instruments.environment import pick_device
from speedrun.outputs import check_output
from speedrun.overrides import EXTENSIONS, SCHEDULE, TRAIN_SECTIONS, add_train_flags, train_settings

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
        description="Interleave N seeded runs of a speedrun recipe (default fast94) with N runs of the anchor "
                    "on the same data and GPU, time both by the same rule, and write one 'anchor' record with "
                    "both distributions and the time ratio with its 95%% CI.")
    p.add_argument("anchor", choices=sorted(ANCHORS), help="the published run to compare against")
    add_train_flags(p, default_recipe="fast94",
                    sections=[s for s in TRAIN_SECTIONS if s is not SCHEDULE and s not in EXTENSIONS])
    p.set_defaults(handler=run, anchor_options=add_options(p, AnchorOptions, "anchor"))
    return p


def run(args: argparse.Namespace) -> int:
    """Check the anchor can run here first (one clear line if not), then run the interleaved runs."""
    side = ANCHORS[args.anchor]()
    workdir = options_from(args, args.anchor_options).workdir
    if workdir is not None:
        check_output(workdir, flag="--workdir", folder=True)
    settings = train_settings(args)
    side.check(pick_device(settings.options.device), train_images_of(settings.options))
    run_anchor(settings.recipe, side, settings.options, command=["speedrun", *sys.argv[1:]],
               workdir=workdir)
    return 0
