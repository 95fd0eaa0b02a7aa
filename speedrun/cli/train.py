"""``speedrun [train]``: train seeded runs of a recipe to a target accuracy and write a record."""
from __future__ import annotations

from typing import TYPE_CHECKING

import argparse
import dataclasses
import sys

from speedrun.data.loading import load_cifar10
from speedrun.cli.extension_flags import AUTO, add_extension_arguments, apply_training_flags
from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.training.optimizers import OPTIMIZER_NAMES
from speedrun.recipes import RECIPES, Recipe, get_recipe

if TYPE_CHECKING:
    from speedrun.cli import Command


def add_harness_arguments(p: argparse.ArgumentParser, *, default_recipe: str = "classic") -> None:
    """Flags shared by every command that trains: data, device, runs, record."""
    g = p.add_argument_group("runs and data")
    g.add_argument("--recipe", default=default_recipe,
                   help=f"named recipe: {', '.join(RECIPES)}, or a fast94 ablation (default: {default_recipe})")
    g.add_argument("--target", type=float, default=None, help="test accuracy that ends a run, in (0, 1] (default: the recipe's)")
    g.add_argument("--runs", type=int, default=1, help="number of seeded runs (default: 1)")
    g.add_argument("--seed", type=int, default=0, help="seed of the first run; run i uses seed+i (default: 0)")
    g.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if present)")
    g.add_argument("--compile", dest="compile", action="store_true", default=None, help="torch.compile the model (default on CUDA)")
    g.add_argument("--no-compile", dest="compile", action="store_false", help="do not torch.compile (default on CPU)")
    g.add_argument("--data-dir", default=None, help="folder or file holding CIFAR-10 (default: $SPEEDRUN_DATA_DIR or ~/.cache/speedrun)")
    g.add_argument("--no-download", dest="download", action="store_false", help="never download CIFAR-10")
    g.add_argument("--train-subset", type=int, default=None, metavar="N", help="train on the first N training images")
    g.add_argument("--test-subset", type=int, default=None, metavar="N", help="evaluate on the first N test images")
    g.add_argument("--out", default="results", help="record folder, or a .json path (default: results/)")
    g.add_argument("--no-record", dest="out", action="store_const", const=None, help="write no record")
    g.add_argument("--force", action="store_true", help="replace an existing --out file (never done without it)")


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """Overrides of the chosen recipe's fields; each defaults to None (keep the recipe's)."""
    g = p.add_argument_group("recipe overrides")
    g.add_argument("--epochs", type=int, help="epoch budget")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", choices=OPTIMIZER_NAMES)
    g.add_argument("--momentum", type=float, help="SGD/RMSprop momentum or Adam beta1 (when not cycled)")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--nesterov", dest="nesterov", action="store_true", default=None)
    g.add_argument("--no-nesterov", dest="nesterov", action="store_false")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--crop-padding", type=int, help="random-crop padding in pixels; 0 disables")
    g.add_argument("--no-flip", dest="flip", action="store_false", default=None, help="no random horizontal flip")
    g.add_argument("--cutout", type=int, dest="cutout_size", help="cutout square side; 0 disables")
    g.add_argument("--tta", choices=("none", "flip", "multi"), help="test-time views: none, flip, or multi (flip + 1-px shifts)")
    g.add_argument("--flip-mode", choices=("random", "alternate"), help="random flips, or each image flipped every other epoch")
    g.add_argument("--eval-every", type=int, help="evaluate every k-th epoch (always after the last)")
    g.add_argument("--full-budget", dest="stop_at_target", action="store_false", default=None,
                   help="train the whole epoch budget even after reaching the target")
    g.add_argument("--input-kernel", dest="input_kernel", action="store_true", default=None,
                   help="build batches with the fused augment+normalize kernel (kernels/); off by default until "
                        "a GPU benchmark shows it faster")
    g.add_argument("--width", type=float, dest="width_factor", help="multiply every layer's width (e.g. 0.25 for a quick CPU run)")


def _replace_given(obj, **values):
    given = {k: v for k, v in values.items() if v is not None}
    return dataclasses.replace(obj, **given) if given else obj


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The named recipe with the command line's overrides applied (ValueError on bad values)."""
    recipe = get_recipe(args.recipe)
    model = recipe.model
    if args.width_factor is not None:
        if args.width_factor <= 0:
            raise ValueError(f"--width must be positive, got {args.width_factor}")
        model = dataclasses.replace(model, widths=tuple(max(1, round(w * args.width_factor)) for w in model.widths))
    return recipe.replace(
        model=model,
        train=_replace_given(recipe.train, epochs=args.epochs, batch_size=args.batch_size,
                             label_smoothing=args.label_smoothing, tta=args.tta, flip_mode=args.flip_mode, eval_every=args.eval_every,
                             stop_at_target=args.stop_at_target, input_kernel=args.input_kernel),
        optimizer=_replace_given(recipe.optimizer, name=args.optimizer, momentum=args.momentum,
                                 weight_decay=args.weight_decay, nesterov=args.nesterov),
        augment=_replace_given(recipe.augment, crop_padding=args.crop_padding, flip=args.flip,
                               cutout_size=args.cutout_size),
    )


def options_from_args(args: argparse.Namespace) -> HarnessOptions:
    return HarnessOptions(runs=args.runs, seed=args.seed, target=args.target, device=args.device,
                          compile=args.compile, data_dir=args.data_dir, download=args.download,
                          train_subset=args.train_subset, test_subset=args.test_subset, out=args.out,
                          force=args.force)


def register(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command.name, help=command.help,
                              description="Train N seeded runs of a recipe on CIFAR-10, report time-to-accuracy, "
                                          "and write one JSON record.")
    add_harness_arguments(p)
    add_recipe_arguments(p)
    add_extension_arguments(p)
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    options = options_from_args(args)
    # --max-lr auto runs the LR range test on the run's data first; load it once for both.
    data = load_cifar10(options.data_dir, download=options.download) if args.max_lr == AUTO else None
    recipe = apply_training_flags(args, recipe, options, data=data)
    run_benchmark(recipe, options, data=data, command=["speedrun", *sys.argv[1:]])
    return 0
