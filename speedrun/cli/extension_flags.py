"""Command-line surface for a training run's schedule and extensions.

``add_extension_arguments`` adds the SWA, snapshot-ensemble and reduce-on-plateau flags, lets
``--max-lr`` be ``auto``, and adds the schedule policy flags of :mod:`speedrun.schedules`
(``--schedule cyclic_lr --base-lr ... --mode triangular2``) where the parser lacks them.
``apply_training_flags`` turns them into a recipe: its schedule replaced or re-peaked, its
extensions appended. The schedule stays data: a :class:`CommandLineSchedule` holds the flags as
given, so a record shows what was asked for, and it is built like the recipe's own
``ScheduleSpec`` once the step count is known.

Rules: ``--schedule NAME`` takes the whole policy from the flags. Without it the recipe's
schedule is kept, and the only policy flag allowed is ``--max-lr``, which rescales the recipe's
curve to that peak (or sets its ``max_lr``). ``--max-lr auto`` runs the LR range test first.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from speedrun.cli.schedule_flags import (
    add_schedule_arguments,
    flag_for,
    given_schedule_flags,
    schedule_from_args,
)
from speedrun.cli.values import finite_float, whole_number
from speedrun.data.cifar10 import CIFAR10_TRAIN_IMAGES
from speedrun.errors import SettingError, SpeedrunError
from speedrun.extensions.plateau import PLATEAU_METRICS, THRESHOLD_MODES, PlateauConfig
from speedrun.extensions.snapshots import SnapshotEnsembleConfig
from speedrun.extensions.swa import SWAConfig
from speedrun.schedules import ANNEAL_STRATEGIES, Schedule, policy_parameters
from speedrun.training.lr_range_test import LRFinderConfig, resolve_auto_max_lr

if TYPE_CHECKING:
    from speedrun.bench.harness import HarnessOptions
    from speedrun.data.cifar10 import Cifar10
    from speedrun.recipes import Recipe

AUTO = "auto"
_STAND_IN_PEAK = 1e3   # only checks that --max-lr auto has a peak to set; never trained with
_PLATEAU_FLAGS = ("factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps", "metric")


@dataclass(frozen=True)
class CommandLineSchedule:
    """A schedule as given on the command line: policy ``name`` and its flags' values (as parsed).

    Durations may be in epochs (``"10ep"``), so it is built only when the run's step count is
    known; ``build`` has the signature of ``ScheduleSpec.build``.
    """

    name: str
    flags: Mapping[str, Any]

    def build(self, total_steps: int, steps_per_epoch: int) -> Schedule:
        args = argparse.Namespace(schedule=self.name, **dict(self.flags))
        return schedule_from_args(args, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                                  default_name=self.name)


def add_extension_arguments(parser: argparse.ArgumentParser) -> None:
    """The schedule policy flags of :func:`add_schedule_arguments` (with ``--max-lr auto``),
    and the SWA, snapshot-ensemble and reduce-on-plateau flags."""
    add_schedule_arguments(parser, max_lr_type=max_lr_value)

    swa = parser.add_argument_group("stochastic weight averaging")
    swa.add_argument("--swa-epochs", type=whole_number, default=None, metavar="N",
                     help="average the weights over the last N epochs (BN statistics recomputed at the end)")
    swa.add_argument("--swa-lr", type=finite_float, default=None, metavar="LR", help="learning rate of the SWA phase")
    swa.add_argument("--swa-anneal-epochs", type=whole_number, default=None, metavar="N",
                     help="epochs to anneal from the schedule's lr to --swa-lr (default 0: switch at once)")
    swa.add_argument("--swa-anneal-strategy", choices=ANNEAL_STRATEGIES, default=None,
                     help="annealing shape (default cos)")

    snap = parser.add_argument_group("snapshot ensemble (for warm restarts)")
    snap.add_argument("--snapshot-ensemble", action="store_true", default=False,
                      help="score the ensemble of the weights at each cycle's end (cycles found in the schedule)")
    snap.add_argument("--snapshot-epochs", default=None, metavar="E1,E2,...",
                      help="take the snapshots at these epochs instead (implies --snapshot-ensemble)")

    plateau = parser.add_argument_group("reduce on plateau")
    plateau.add_argument("--plateau", action="store_true", default=False,
                         help="multiply the lr by --plateau-factor when the metric stops improving")
    plateau.add_argument("--plateau-metric", choices=tuple(PLATEAU_METRICS), default=None,
                         help="train_loss (min, default) or test_acc (max; tunes on the test set)")
    plateau.add_argument("--plateau-factor", type=finite_float, default=None, help="default 0.1")
    plateau.add_argument("--plateau-patience", type=whole_number, default=None,
                         help="epochs without improvement (default 10)")
    plateau.add_argument("--plateau-threshold", type=finite_float, default=None,
                         help="relative improvement needed (default 1e-4)")
    plateau.add_argument("--plateau-cooldown", type=whole_number, default=None,
                         help="epochs ignored after a reduction (default 0)")
    plateau.add_argument("--plateau-min-lr", type=finite_float, default=None, help="lower bound on the lr (default 0)")
    plateau.add_argument("--plateau-threshold-mode", choices=THRESHOLD_MODES, default=None,
                         help="rel (default): improve by a fraction; abs: by an amount")
    plateau.add_argument("--plateau-eps", type=finite_float, default=None,
                         help="a reduction smaller than this is skipped (default 1e-8)")


def max_lr_value(text: str) -> float | str:
    """``--max-lr``'s type: a number, or ``auto`` (run the LR range test)."""
    if text.strip().lower() == AUTO:
        return AUTO  # --max-lr auto: the LR range test's one-cycle suggestion
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'auto'") from None


def with_peak_lr(spec: Any, peak: float) -> Any:
    """``spec`` with its peak lr set to ``peak``: ``max_lr`` where the policy has one, else a
    piecewise-linear curve scaled so its highest knot is ``peak`` (its shape and ratios kept)."""
    if not (isinstance(peak, (int, float)) and math.isfinite(peak) and peak > 0):
        raise ValueError(f"--max-lr must be a number > 0, got {peak!r}")
    if isinstance(spec, CommandLineSchedule):
        if "max_lr" not in policy_parameters(spec.name):
            raise ValueError(f"--max-lr: schedule {spec.name!r} has no max_lr; use cyclic_lr or one_cycle_lr")
        return dataclasses.replace(spec, flags={**spec.flags, "max_lr": float(peak)})
    params = dict(spec.params)
    if "max_lr" in policy_parameters(spec.name):
        params["max_lr"] = float(peak)
    elif spec.name == "piecewise_linear":
        top = max(lr for _, lr in params["knots"])
        if top <= 0:
            raise ValueError("--max-lr: the recipe's piecewise-linear schedule is all zeros; nothing to scale")
        params["knots"] = tuple((pos, lr * peak / top) for pos, lr in params["knots"])
    else:
        raise ValueError(f"--max-lr: the recipe's schedule {spec.name!r} has no peak to set; "
                         "give the whole policy with --schedule NAME")
    return dataclasses.replace(spec, params=params)


def schedule_spec_from_args(args: argparse.Namespace, recipe: Recipe, *, max_lr: float | None = None,
                            auto: bool = False) -> Any:
    """The run's schedule spec: from ``--schedule`` and its flags, or the recipe's (re-peaked by
    ``max_lr``, a resolved ``--max-lr``). With ``auto`` (the peak came from the range test) a
    cyclic_lr without ``--base-lr`` gets the test's cyclical lower bound, ``max_lr / 4``.
    ValueError names a flag given without ``--schedule``."""
    given = given_schedule_flags(args)
    given.pop("max_lr", None)
    name = getattr(args, "schedule", None)
    if name:
        name = name.strip().lower().replace("-", "_")
        flags = dict(given)
        if max_lr is not None:
            if "max_lr" not in policy_parameters(name):   # also rejects an unknown name
                raise ValueError(f"--max-lr: schedule {name!r} has no max_lr; use cyclic_lr or one_cycle_lr")
            flags["max_lr"] = max_lr
            if auto and name == "cyclic_lr" and "base_lr" not in flags:
                flags["base_lr"] = max_lr / LRFinderConfig().cyclic_divisor
        return CommandLineSchedule(name, flags)
    if given:
        named = ", ".join(flag_for(p) for p in given)
        raise ValueError(f"{named}: give the policy with --schedule NAME too (the recipe's schedule is "
                         f"{recipe.schedule.name}; without --schedule only --max-lr may change it)")
    return recipe.schedule if max_lr is None else with_peak_lr(recipe.schedule, max_lr)


def _check_unused(args: argparse.Namespace, needs: str, flags: tuple[str, ...], prefix: str) -> None:
    unused = [f"--{prefix}-{f.replace('_', '-')}" for f in flags if getattr(args, f"{prefix}_{f}", None) is not None]
    if unused:
        raise ValueError(f"{', '.join(unused)}: only used with {needs}")


def _with_flags(prefix: str, make: Callable[[], Any]) -> Any:
    """Build an extension config; a SettingError names the flag (``--plateau-factor``), not the field."""
    try:
        return make()
    except SettingError as error:
        def flag(name: str) -> str:
            name = name.removeprefix(f"{prefix}_")
            return f"--{prefix}-{name.replace('_', '-')}"
        raise SpeedrunError(error.render(flag)) from None


def _parse_epochs(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--snapshot-epochs: {text!r} is not a comma-separated list of epochs like 10,30,70") from None


def extensions_from_args(args: argparse.Namespace) -> tuple:
    """The extension configs the flags ask for, in the order plateau, SWA, snapshot ensemble."""
    extensions: list = []
    if getattr(args, "plateau", False):
        given = {f: getattr(args, f"plateau_{f}") for f in _PLATEAU_FLAGS
                 if getattr(args, f"plateau_{f}", None) is not None}
        extensions.append(_with_flags("plateau", lambda: PlateauConfig(**given)))
    else:
        _check_unused(args, "--plateau", _PLATEAU_FLAGS, "plateau")

    swa_epochs, swa_lr = getattr(args, "swa_epochs", None), getattr(args, "swa_lr", None)
    if swa_epochs is not None or swa_lr is not None:
        if swa_epochs is None or swa_lr is None:
            raise ValueError("--swa-epochs and --swa-lr go together: give both")
        options = {k: v for k, v in (("anneal_epochs", getattr(args, "swa_anneal_epochs", None)),
                                     ("anneal_strategy", getattr(args, "swa_anneal_strategy", None))) if v is not None}
        extensions.append(_with_flags("swa", lambda: SWAConfig(epochs=swa_epochs, swa_lr=swa_lr, **options)))
    else:
        _check_unused(args, "--swa-epochs and --swa-lr", ("anneal_epochs", "anneal_strategy"), "swa")

    snapshot_epochs = getattr(args, "snapshot_epochs", None)
    if getattr(args, "snapshot_ensemble", False) or snapshot_epochs is not None:
        if any(isinstance(e, SWAConfig) for e in extensions):
            raise ValueError("--swa-epochs and --snapshot-ensemble both replace the run's final accuracy; choose one")
        ends = _parse_epochs(snapshot_epochs) if snapshot_epochs is not None else None
        extensions.append(SnapshotEnsembleConfig(cycle_end_epochs=ends))
    return tuple(extensions)


def apply_training_flags(args: argparse.Namespace, recipe: Recipe, options: HarnessOptions, *,
                         data: Cifar10 | None = None, log: Callable[[str], None] = print,
                         resolve_auto: bool = True) -> Recipe:
    """``recipe`` with the command line's schedule and extensions.

    ``--max-lr auto`` runs the LR range test for ``recipe`` on the run's data (``data``, or loaded
    per ``options``) and device first. The schedule is built once here for the expected step count
    (``--train-subset`` or 50,000 images), so a bad flag fails before any data is moved or compiled.
    ``resolve_auto=False`` only checks the flags: ``auto`` keeps a stand-in peak, never trained with.
    """
    extensions = extensions_from_args(args)
    epochs = recipe.train.epochs
    for ext in extensions:
        if isinstance(ext, SWAConfig) and ext.epochs > epochs:
            raise ValueError(f"--swa-epochs {ext.epochs} is more than the run's {epochs} epochs")
        if isinstance(ext, SnapshotEnsembleConfig) and ext.cycle_end_epochs and ext.cycle_end_epochs[-1] > epochs:
            raise ValueError(f"--snapshot-epochs go past the run's {epochs} epochs")
    max_lr = getattr(args, "max_lr", None)
    auto = max_lr == AUTO
    # Check the flags' structure before the range test (a stand-in peak for auto), then build for real.
    spec = schedule_spec_from_args(args, recipe, max_lr=_STAND_IN_PEAK if auto else max_lr, auto=auto)
    if auto and resolve_auto:
        max_lr = resolve_auto_max_lr(recipe, options, data, log=log)
        spec = schedule_spec_from_args(args, recipe, max_lr=max_lr, auto=True)
    steps_per_epoch = max(1, (options.train_subset or CIFAR10_TRAIN_IMAGES) // recipe.train.batch_size)
    spec.build(recipe.train.total_steps(steps_per_epoch), steps_per_epoch)
    return recipe.replace(schedule=spec, extensions=tuple(recipe.extensions) + extensions)

