"""``speedrun sweep SPEC.toml``: many seeded runs and variants on Ray, resumable, ranked at the end."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING

from speedrun.cli import add_options, options_from
from speedrun.results.records import DEFAULT_RESULTS_DIR

if TYPE_CHECKING:
    from speedrun.cli import Command


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    from speedrun.sweeps.execution import RayOptions
    from speedrun.sweeps.sweep import SweepOptions

    p = subparsers.add_parser(
        command.name, help=command.help,
        description="Run a sweep spec (TOML: base flags, named variants, an optional grid and tuning, "
                    "seeds) on Ray Tune: one run per GPU at a time, each run's record written as it finishes, "
                    "a second start doing only what is missing. Ends with the leaderboard of the variants "
                    "and each compared against the spec's baseline.")
    p.add_argument("spec", metavar="SPEC.toml", help="the sweep spec (see speedrun.sweeps.spec, or the README)")
    p.set_defaults(handler=run, sweep=add_options(p, SweepOptions, "sweep"), ray=add_options(p, RayOptions, "Ray"))
    return p


def run(args: argparse.Namespace) -> int:
    from speedrun.sweeps.execution import import_ray
    from speedrun.sweeps.spec import load_spec
    from speedrun.sweeps.store import SweepFolder
    from speedrun.sweeps.summary import comparisons, leaderboard_text, summary_markdown
    from speedrun.sweeps.sweep import run_sweep

    options = dataclasses.replace(options_from(args, args.sweep), ray=options_from(args, args.ray))
    import_ray(options.ray.address)    # says how to install Ray before anything else
    spec = load_spec(args.spec)
    if spec.tune is not None:
        from speedrun.sweeps.tune import import_optuna
        import_optuna()                # and Optuna, when the spec tunes
    if options.out is None:
        options = dataclasses.replace(options, out=f"{DEFAULT_RESULTS_DIR}/sweeps/{spec.name}")
    report = run_sweep(spec, options, command=["speedrun", *sys.argv[1:]])
    print()
    sys.stdout.write(leaderboard_text(report))
    for label, text in comparisons(spec, report):
        print(f"\n{label} against {spec.baseline}:")
        sys.stdout.write(text)
    path = SweepFolder(report.folder).write_summary(summary_markdown(spec, report))
    print(f"\nsummary: {path}")
    return 1 if report.failed else 0
