"""The flags every command that trains shares: which recipe, how many runs, on what data and device, where the record goes."""
from __future__ import annotations

import argparse

from speedrun.bench.harness import HarnessOptions
from speedrun.cli import name_settings
from speedrun.cli.values import finite_float, seed, whole_number
from speedrun.recipes import RECIPES
from speedrun.results.records import DEFAULT_RESULTS_DIR

# HarnessOptions field -> its flag, for naming flags in a SettingError's message.
HARNESS_FLAGS = {"runs": "--runs", "seed": "--seed", "target": "--target", "device": "--device",
                 "data_dir": "--data-dir", "train_subset": "--train-subset", "test_subset": "--test-subset",
                 "out": "--out"}


def add_harness_arguments(p: argparse.ArgumentParser, *, default_recipe: str = "classic") -> None:
    """Flags shared by every command that trains: data, device, runs, record."""
    g = p.add_argument_group("runs and data")
    g.add_argument("--recipe", default=default_recipe,
                   help=f"named recipe: {', '.join(RECIPES)}, or a fast94 ablation (default: {default_recipe})")
    g.add_argument("--recipe-from", default=None, metavar="RECORD",
                   help="rebuild the recipe a record ran (its every setting), instead of --recipe; flags still override")
    g.add_argument("--target", type=finite_float, default=None, help="test accuracy that ends a run, in (0, 1] (default: the recipe's)")
    g.add_argument("--runs", type=whole_number, default=1, help="number of seeded runs (default: 1)")
    g.add_argument("--seed", type=seed, default=0, help="seed of the first run; run i uses seed+i (default: 0)")
    g.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if present)")
    g.add_argument("--compile", dest="compile", action="store_true", default=None, help="torch.compile the model (default on CUDA)")
    g.add_argument("--no-compile", dest="compile", action="store_false", help="do not torch.compile (default on CPU)")
    g.add_argument("--data-dir", default=None, help="folder or file holding CIFAR-10 (default: $SPEEDRUN_DATA_DIR or ~/.cache/speedrun)")
    g.add_argument("--no-download", dest="download", action="store_false", help="never download CIFAR-10")
    g.add_argument("--train-subset", type=whole_number, default=None, metavar="N", help="train on the first N training images")
    g.add_argument("--test-subset", type=whole_number, default=None, metavar="N", help="evaluate on the first N test images")
    g.add_argument("--out", default=DEFAULT_RESULTS_DIR, help=f"record folder, or a .json path (default: {DEFAULT_RESULTS_DIR}/)")
    g.add_argument("--no-record", dest="out", action="store_const", const=None, help="write no record")
    g.add_argument("--force", action="store_true", help="replace an existing --out file (never done without it)")
    name_settings(p, HARNESS_FLAGS)


def options_from_args(args: argparse.Namespace) -> HarnessOptions:
    return HarnessOptions(runs=args.runs, seed=args.seed, target=args.target, device=args.device,
                          compile=args.compile, data_dir=args.data_dir, download=args.download,
                          train_subset=args.train_subset, test_subset=args.test_subset, out=args.out,
                          force=args.force)
