"""The command-line surface of :mod:`speedrun.schedules`: one flag per policy parameter.

``add_schedule_arguments`` adds ``--schedule NAME`` and a kebab-case flag for every parameter of
every policy (all defaulting to None, so only what the user gave is passed on), and
``schedule_from_args`` builds the chosen policy once the run's step count is known. Users think
in epochs, so duration flags take a number in units of ``--interval`` or ``Nep`` for N epochs.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from speedrun.checks import int_at_least, is_real, one_of, real_in
from speedrun.cli import name_settings
from speedrun.schedules import (
    ANNEAL_STRATEGIES,
    CYCLIC_MODES,
    INTERVALS,
    SCHEDULES,
    WARMUP_MODES,
    Schedule,
    build_schedule,
    lookup_policy,
    policy_parameters,
    unit_count,
    with_warmup,
)


@dataclasses.dataclass(frozen=True)
class Duration:
    """A length from the command line: ``amount`` in the schedule's units, or in epochs."""

    amount: float
    in_epochs: bool = False

    def to_units(self, interval: str, steps_per_epoch: int) -> float:
        """The length in units of ``interval`` (steps, or epochs)."""
        if self.in_epochs and interval == "step":
            return self.amount * steps_per_epoch
        return self.amount


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ep)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> Duration:
    """Parse ``"300"`` (units of ``--interval``) or ``"2.5ep"`` (epochs)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number (in units of --interval) "
                         "or a number of epochs like 10ep")
    return Duration(float(match.group(1)), in_epochs=match.group(2) is not None)


@dataclasses.dataclass(frozen=True)
class _Flag:
    """One command-line flag: which parameter it sets and how its text is read."""

    param: str
    kind: str  # float | int | bool | choice | duration | whole | wholes | knots
    help: str
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.param.replace("_", "-")


_POLICY_FLAGS: tuple[_Flag, ...] = (
    _Flag("base_lr", "float", "base (or, for cyclic_lr, lower) learning rate"),
    _Flag("max_lr", "float", "peak learning rate (cyclic_lr, one_cycle_lr)"),
    _Flag("mode", "choice", "cyclic_lr amplitude policy", CYCLIC_MODES),
    _Flag("gamma", "float", "decay factor (step_lr, multistep_lr, exponential_lr, cyclic_lr exp_range)"),
    _Flag("step_size", "whole", "step_lr decay period"),
    _Flag("milestones", "wholes", "multistep_lr decay points, comma-separated (e.g. 30ep,60ep)"),
    _Flag("T_max", "whole", "cosine_annealing_lr half-period (default: the whole run)"),
    _Flag("T_0", "whole", "cosine_annealing_warm_restarts first cycle length"),
    _Flag("T_mult", "int", "cosine_annealing_warm_restarts cycle growth factor (integer >= 1)"),
    _Flag("eta_min", "float", "cosine floor learning rate"),
    _Flag("pct_start", "float", "one_cycle_lr fraction of the run spent warming up, in (0, 1)"),
    _Flag("anneal_strategy", "choice", "one_cycle_lr annealing shape", ANNEAL_STRATEGIES),
    _Flag("div_factor", "float", "one_cycle_lr: initial lr = max_lr / div_factor"),
    _Flag("final_div_factor", "float", "one_cycle_lr: final lr = initial lr / final_div_factor"),
    _Flag("three_phase", "bool", "one_cycle_lr: anneal back to the initial lr before the final decay"),
    _Flag("cycle_momentum", "bool", "cycle momentum inversely to the lr (cyclic_lr, one_cycle_lr)"),
    _Flag("base_momentum", "float", "momentum at peak lr (cyclic_lr, one_cycle_lr)"),
    _Flag("max_momentum", "float", "momentum at low lr (cyclic_lr, one_cycle_lr)"),
    _Flag("step_size_up", "duration", "cyclic_lr rising half-cycle length"),
    _Flag("step_size_down", "duration", "cyclic_lr falling half-cycle length (default: step-size-up)"),
    _Flag("knots", "knots", "piecewise_linear POS:LR pairs, comma-separated (e.g. 0:0,5ep:0.4,30ep:0)"),
    _Flag("factor", "float", "constant_lr factor"),
    _Flag("start_factor", "float", "linear_lr start factor"),
    _Flag("end_factor", "float", "linear_lr end factor"),
    _Flag("total_iters", "whole", "constant_lr / linear_lr / polynomial_lr length"),
    _Flag("power", "float", "polynomial_lr exponent"),
)

# Flags about the run rather than the policy: they apply whichever policy is chosen.
_RUN_FLAGS: tuple[_Flag, ...] = (
    _Flag("warmup", "whole", "prefix this much warmup (taken out of the run's length)"),
    _Flag("warmup_mode", "choice", "warmup shape", WARMUP_MODES),
    _Flag("warmup_start_factor", "float", "warmup starts at this fraction of the schedule's first lr "
          "(default 1/3)"),
    _Flag("interval", "choice", "step the schedule per optimizer step or per epoch (default: step)", INTERVALS),
)

_FLAGS_BY_PARAM = {f.param: f for f in _POLICY_FLAGS + _RUN_FLAGS}
_NO_FLAG = ("lr_lambda", "scale_fn", "scale_mode")  # Python callables: API only


def add_schedule_arguments(parser: argparse.ArgumentParser, *,
                           max_lr_type: Callable[[str], Any] = float) -> None:
    """Add ``--schedule NAME`` and one flag per schedule parameter, all defaulting to None.

    Duration flags take a number in units of ``--interval`` (steps by default) or a number
    of epochs with an ``ep`` suffix: ``--T-0 10ep`` means 10 epochs whatever the interval.
    Durations that PyTorch counts in whole steps must come out whole. ``max_lr_type`` lets a
    command accept more than a number for ``--max-lr`` (the train command's ``auto``).
    """
    group = parser.add_argument_group("learning-rate schedule")
    group.add_argument("--schedule", metavar="NAME", default=None,
                       help=f"schedule policy: {', '.join(sorted(SCHEDULES))}")
    for spec in _POLICY_FLAGS + _RUN_FLAGS:
        kwargs: dict[str, Any] = {"dest": spec.param, "default": None, "help": spec.help}
        if spec.param == "max_lr":
            kwargs["type"] = max_lr_type
        elif spec.kind == "float":
            kwargs["type"] = float
        elif spec.kind == "int":
            kwargs["type"] = int
        elif spec.kind == "choice":
            kwargs["choices"] = spec.choices
        elif spec.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = {"wholes": "N[ep],...", "knots": "POS:LR,..."}.get(spec.kind, "N[ep]")
        group.add_argument(spec.flag, **kwargs)
    # A policy's bad parameter (SettingError naming e.g. max_lr) is then said as its flag.
    name_settings(parser, {spec.param: spec.flag for spec in _POLICY_FLAGS + _RUN_FLAGS})


def _as_duration(flag: str, value: object) -> Duration:
    if isinstance(value, Duration):
        return value
    if is_real(value):
        return Duration(float(value))
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None


def _to_units(flag: str, value: object, interval: str, steps_per_epoch: int, whole: bool) -> float | int:
    units = _as_duration(flag, value).to_units(interval, steps_per_epoch)
    if not whole:
        return units
    rounded = round(units)
    if abs(units - rounded) > 1e-9 * max(1.0, abs(units)):
        raise ValueError(f"{flag} {value} is {units:g} {interval}s; it must be a whole number of {interval}s")
    return int(rounded)


def _split(value: object) -> list:
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    return list(value)  # type: ignore[call-overload]


def _convert(spec: _Flag, value: object, interval: str, steps_per_epoch: int) -> object:
    """Turn a flag's value (text from argparse, or a Python default) into the policy's argument."""
    if spec.kind == "duration":
        return _to_units(spec.flag, value, interval, steps_per_epoch, whole=False)
    if spec.kind == "whole":
        return _to_units(spec.flag, value, interval, steps_per_epoch, whole=True)
    if spec.kind == "wholes":
        return [_to_units(spec.flag, v, interval, steps_per_epoch, whole=True) for v in _split(value)]
    if spec.kind == "knots":
        knots = []
        for knot in _split(value):
            if isinstance(knot, str):
                pos, sep, lr = knot.partition(":")
                if not sep:
                    raise ValueError(f"{spec.flag}: {knot!r} is not POS:LR")
            else:
                pos, lr = knot
            try:
                lr_value = float(lr)
            except (TypeError, ValueError):
                raise ValueError(f"{spec.flag}: {lr!r} is not a learning rate") from None
            knots.append((_to_units(spec.flag, pos, interval, steps_per_epoch, whole=False), lr_value))
        return knots
    return value


def given_schedule_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule parameters the command line set (by parameter name), in flag-table order."""
    return {spec.param: getattr(args, spec.param) for spec in _POLICY_FLAGS + _RUN_FLAGS
            if getattr(args, spec.param, None) is not None}


def flag_for(param: str) -> str:
    """The command-line flag of a schedule parameter (``T_0`` -> ``--T-0``)."""
    return _FLAGS_BY_PARAM[param].flag


def schedule_from_args(args: argparse.Namespace, *, total_steps: int, steps_per_epoch: int,
                       default_name: str = "one_cycle_lr", default_params: Mapping[str, Any] | None = None
                       ) -> Schedule:
    """Build the schedule the command line asks for (flags from :func:`add_schedule_arguments`).

    ``default_params`` (keyed by parameter name, durations may be ``"10ep"`` strings) fill
    in what the user did not give, and are silently skipped where the chosen policy does not
    take them (so the CLI can offer e.g. both ``base_lr`` and ``max_lr`` from its ``--lr``).
    A flag the user gave that the chosen policy does not take is a ValueError naming the
    flag. ``--warmup`` is taken out of ``total_steps``: the main schedule gets the rest.
    """
    defaults = dict(default_params or {})
    name = getattr(args, "schedule", None) or default_name
    policy = lookup_policy(name)
    accepted = policy_parameters(policy.__name__)

    given = given_schedule_flags(args)
    rejected = [_FLAGS_BY_PARAM[p].flag for p in given if p not in accepted and p in
                {spec.param for spec in _POLICY_FLAGS}]
    if rejected:
        takes = ", ".join(_FLAGS_BY_PARAM[p].flag for p in accepted if p in _FLAGS_BY_PARAM)
        raise ValueError(f"{', '.join(rejected)}: not a parameter of schedule {policy.__name__!r} "
                         f"(it takes {takes})")
    run_params = {spec.param for spec in _RUN_FLAGS}
    for param, value in defaults.items():
        if param not in run_params and not any(param in policy_parameters(n) for n in SCHEDULES):
            raise ValueError(f"default_params: no schedule takes a parameter {param!r}")
        if param not in given and (param in accepted or param in run_params):
            given[param] = value

    interval = one_of("--interval", given.pop("interval", "step"), INTERVALS)
    steps_per_epoch = int_at_least("steps_per_epoch", steps_per_epoch, 1)
    total_steps = int_at_least("total_steps", total_steps, 1)
    warmup = given.pop("warmup", None)
    warmup_mode = given.pop("warmup_mode", "linear")
    warmup_start_factor = given.pop("warmup_start_factor", 1.0 / 3)

    params = {}
    for param, value in given.items():
        spec = _FLAGS_BY_PARAM.get(param)
        params[param] = value if spec is None else _convert(spec, value, interval, steps_per_epoch)

    warmup_steps = 0
    if warmup is not None:
        warmup_units = _convert(_FLAGS_BY_PARAM["warmup"], warmup, interval, steps_per_epoch)
        assert isinstance(warmup_units, int)                # a "whole" flag converts to an int
        warmup_steps = warmup_units * (steps_per_epoch if interval == "epoch" else 1)
        if warmup_steps < 0 or warmup_steps >= total_steps:
            raise ValueError(f"--warmup {warmup} is {warmup_steps} steps; it must be >= 0 and leave "
                             f"some of the {total_steps} steps for the schedule")
    units = unit_count(total_steps - warmup_steps, interval, steps_per_epoch)
    milestones = params.get("milestones") or ()
    late = [m for m in milestones if m >= units] if isinstance(milestones, (list, tuple)) else []
    if late:
        unit = "epochs" if interval == "epoch" else "steps"
        raise ValueError(f"--milestones: {', '.join(map(str, late))} lie(s) past the run's end ({units} {unit} after "
                         f"any warm-up); a milestone there would never take effect")
    schedule = build_schedule(policy.__name__, total_steps - warmup_steps, steps_per_epoch=steps_per_epoch,
                              interval=interval, **params)
    if warmup_steps:
        schedule = with_warmup(schedule, warmup_steps, mode=one_of("--warmup-mode", warmup_mode, WARMUP_MODES),
                               start_factor=real_in("--warmup-start-factor", warmup_start_factor, low=0, high=1))
    return schedule
