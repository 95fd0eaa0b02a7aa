"""``speedrun sweep SPEC.toml``: many seeded runs and variants on Ray, resumable, ranked at the end."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from speedrun.cli import name_settings
from speedrun.cli.values import finite_float, whole_number
from speedrun.results.records import DEFAULT_RESULTS_DIR

if TYPE_CHECKING:
    from speedrun.cli import Command

RAY_FLAGS = {"address": "--address", "cpus_per_run": "--cpus-per-run", "retries": "--retries",
             "num_cpus": "--num-cpus", "object_store_mb": "--object-store-mb", "max_workers": "--max-workers"}


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        command.name, help=command.help,
        description="Run a sweep spec (TOML: base flags, named variants, an optional grid and tuning, "
                    "seeds) on Ray: one run per GPU at a time, each run's record written as it finishes, "
                    "a second start doing only what is missing. Ends with the leaderboard of the variants "
                    "and each compared against the spec's baseline.")
    p.add_argument("spec", metavar="SPEC.toml", help="the sweep spec (see speedrun.sweeps.spec, or the README)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help=f"the sweep's folder; the same folder resumes it (default: {DEFAULT_RESULTS_DIR}/sweeps/NAME)")
    g = p.add_argument_group("Ray")
    g.add_argument("--address", default=None,
                   help="join a running Ray cluster: auto, or ray://HOST:PORT (default: start a local Ray here)")
    g.add_argument("--cpus-per-run", type=whole_number, default=1, metavar="N",
                   help="CPUs per run where the cluster has no GPU (default: 1)")
    g.add_argument("--retries", type=whole_number, default=1, metavar="N",
                   help="times a run whose worker died is tried again before it is recorded failed (default: 1)")
    g.add_argument("--num-cpus", type=whole_number, default=None, metavar="N",
                   help="CPUs a local Ray offers (default: all)")
    g.add_argument("--object-store-mb", type=whole_number, default=None, metavar="MB",
                   help="a local Ray's object store size (default: Ray's)")
    g.add_argument("--max-workers", type=whole_number, default=None, metavar="N",
                   help="use at most N workers (default: one per GPU, or per --cpus-per-run CPUs)")
    p.add_argument("--progress-every", type=finite_float, default=10.0, metavar="S",
                   help="say done/running/failed/left every S seconds (default: 10)")
    name_settings(p, RAY_FLAGS)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speedrun.sweeps.pool import RayOptions, import_ray
    from speedrun.sweeps.spec import load_spec
    from speedrun.sweeps.store import SweepFolder
    from speedrun.sweeps.summary import comparisons, leaderboard_text, summary_markdown
    from speedrun.sweeps.sweep import SweepOptions, run_sweep

    import_ray()                       # says how to install Ray before anything else
    spec = load_spec(args.spec)
    if spec.tune is not None:
        from speedrun.sweeps.tune import import_optuna
        import_optuna()                # and Optuna, when the spec tunes
    ray = RayOptions(address=args.address, cpus_per_run=args.cpus_per_run, retries=args.retries,
                     num_cpus=args.num_cpus, object_store_mb=args.object_store_mb, max_workers=args.max_workers)
    out = args.out if args.out is not None else f"{DEFAULT_RESULTS_DIR}/sweeps/{spec.name}"
    options = SweepOptions(out=out, ray=ray, progress_every_s=args.progress_every)
    report = run_sweep(spec, options, command=["speedrun", *sys.argv[1:]])
    print()
    sys.stdout.write(leaderboard_text(report))
    for label, text in comparisons(spec, report):
        print(f"\n{label} against {spec.baseline}:")
        sys.stdout.write(text)
    path = SweepFolder(report.folder).write_summary(summary_markdown(spec, report))
    print(f"\nsummary: {path}")
    return 1 if report.failed else 0
