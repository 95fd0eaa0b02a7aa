"""A schedule as recipe data: a policy, its parameters, a warm-up and the interval, declared once.

:class:`ScheduleSpec` holds every policy's parameters (None: the policy's default), so a recipe,
a command line, a sweep and a record all describe a schedule the same way, and a record's
schedule rebuilds exactly. Durations may be in epochs (``"10ep"``), so a spec is built into
per-step values only once the run's step count is known (:meth:`ScheduleSpec.build`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from speedrun.errors import SettingError
from speedrun.schedules.registry import SCHEDULES, build_schedule, lookup_policy, policy_parameters
from speedrun.schedules.schedule import (
    ANNEAL_STRATEGIES,
    CYCLIC_MODES,
    INTERVALS,
    WARMUP_MODES,
    Schedule,
    unit_count,
    with_warmup,
)
from speedrun.settings import check, setting, settings_of

_LONG = 1e9     # the longest duration, in steps or epochs
_RUN_FIELDS = ("name", "warmup", "warmup_mode", "warmup_start_factor", "interval", "knots_as_fraction")
# Durations PyTorch counts in whole units; the others (cyclic half-cycles, knots) may be fractional.
WHOLE_DURATIONS = ("step_size", "milestones", "T_max", "T_0", "total_iters", "warmup")


def _duration(help: str, *, kind: str = "duration") -> Any:
    return setting(None, f"{help}: a number in units of --interval, or epochs like 10ep", kind=kind, low=0,
                   high=_LONG, metavar="N[ep]")


def _rate(help: str, **bounds: Any) -> Any:
    return setting(None, help, **({"low": 0} | bounds))


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule policy by name with its parameters (None: the policy's default), built once the
    step count is known. With ``knots_as_fraction`` (piecewise_linear only) knot positions are
    fractions of the whole run, so a recipe's shape survives an ``--epochs`` override.
    ``warmup`` prefixes that many units of warm-up, taken out of the run's length."""

    name: str = setting("piecewise_linear", "schedule policy", flag="--schedule", choices=tuple(SCHEDULES),
                        metavar="NAME")
    base_lr: float | None = _rate("base (or, for cyclic_lr, lower) learning rate")
    max_lr: float | None = _rate("peak learning rate (cyclic_lr, one_cycle_lr)")
    mode: str | None = setting(None, "cyclic_lr amplitude policy", choices=CYCLIC_MODES)
    gamma: float | None = _rate("decay factor (step_lr, multistep_lr, exponential_lr, cyclic_lr exp_range)",
                                low_open=True)
    step_size: float | str | None = _duration("step_lr decay period")
    milestones: tuple[float | str, ...] | None = _duration("multistep_lr decay points, comma-separated", kind="durations")
    T_max: float | str | None = _duration("cosine_annealing_lr half-period (default: the whole run)")
    T_0: float | str | None = _duration("cosine_annealing_warm_restarts first cycle length")
    T_mult: int | None = setting(None, "cosine_annealing_warm_restarts cycle growth factor", low=1, high=1000)
    eta_min: float | None = _rate("cosine floor learning rate")
    pct_start: float | None = _rate("one_cycle_lr fraction of the run spent warming up", low_open=True, high=1,
                                    high_open=True)
    anneal_strategy: str | None = setting(None, "one_cycle_lr annealing shape", choices=ANNEAL_STRATEGIES)
    div_factor: float | None = _rate("one_cycle_lr: initial lr = max_lr / div_factor", low_open=True)
    final_div_factor: float | None = _rate("one_cycle_lr: final lr = initial lr / final_div_factor", low_open=True)
    three_phase: bool | None = setting(None, "one_cycle_lr: anneal back to the initial lr before the final decay")
    cycle_momentum: bool | None = setting(None, "cycle momentum inversely to the lr (cyclic_lr, one_cycle_lr)")
    base_momentum: float | None = _rate("momentum at peak lr (cyclic_lr, one_cycle_lr)", high=1)
    max_momentum: float | None = _rate("momentum at low lr (cyclic_lr, one_cycle_lr)", high=1)
    step_size_up: float | str | None = _duration("cyclic_lr rising half-cycle length")
    step_size_down: float | str | None = _duration("cyclic_lr falling half-cycle length (default: step-size-up)")
    knots: tuple[tuple[float | str, float], ...] | None = setting(
        None, "piecewise_linear POS:LR pairs, comma-separated (e.g. 0:0,5ep:0.4,30ep:0)", kind="knots", low=0,
        metavar="POS:LR,...")
    factor: float | None = _rate("constant_lr factor", high=1)
    start_factor: float | None = _rate("linear_lr start factor", low_open=True, high=1)
    end_factor: float | None = _rate("linear_lr end factor", high=1)
    total_iters: float | str | None = _duration("constant_lr / linear_lr / polynomial_lr length")
    power: float | None = _rate("polynomial_lr exponent")
    warmup: float | str | None = _duration("warm up for this long first (taken out of the run's length)")
    warmup_mode: str = setting("linear", "warm-up shape", choices=WARMUP_MODES)
    warmup_start_factor: float = setting(1 / 3, "warm-up starts at this fraction of the schedule's first lr", low=0,
                                         high=1)
    interval: str = setting("step", "step the schedule per optimizer step or per epoch", choices=INTERVALS)
    knots_as_fraction: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", lookup_policy(self.name).__name__)
        check(self)
        if self.knots_as_fraction and self.knots is None:
            raise SettingError("knots", "must be given where knot positions are fractions of the run")

    @property
    def params(self) -> dict[str, Any]:
        """The policy parameters given (not None), by name."""
        return {f.name: getattr(self, f.name) for f, _ in settings_of(ScheduleSpec)
                if f.name not in _RUN_FIELDS and getattr(self, f.name) is not None}

    def build(self, total_steps: int, steps_per_epoch: int) -> Schedule:
        """The per-step :class:`~speedrun.schedules.schedule.Schedule` of a run of ``total_steps``.

        A parameter the policy does not take, a duration that is not whole where PyTorch counts
        whole units, a warm-up that leaves nothing, or a milestone past the end: SettingError.
        """
        warmup_steps = 0
        if self.warmup is not None:
            warmup_steps = self._units("warmup", self.warmup, steps_per_epoch)
            if self.interval == "epoch":
                warmup_steps *= steps_per_epoch
            if warmup_steps >= total_steps:
                raise SettingError("warmup", f"{self.warmup} is {warmup_steps} steps; it must leave some of the "
                                             f"{total_steps} steps for the schedule")
        main_steps = total_steps - warmup_steps
        params = {name: self._convert(name, value, steps_per_epoch) for name, value in self.params.items()}
        if self.knots_as_fraction:
            params["knots"] = [(position * main_steps, lr) for position, lr in params["knots"]]
        late = [m for m in params.get("milestones", ()) if m >= unit_count(main_steps, self.interval, steps_per_epoch)]
        if late:
            raise SettingError("milestones", f"{', '.join(map(str, late))} lie(s) past the run's end; a milestone "
                                             "there would never take effect")
        schedule = build_schedule(self.name, main_steps, steps_per_epoch=steps_per_epoch, interval=self.interval,
                                  **params)
        if warmup_steps:
            schedule = with_warmup(schedule, warmup_steps, mode=self.warmup_mode, start_factor=self.warmup_start_factor)
        return schedule

    def with_peak(self, peak: float) -> ScheduleSpec:
        """This schedule with its peak lr at ``peak``: ``max_lr`` where the policy has one, else a
        piecewise-linear curve scaled so its highest knot is ``peak`` (shape and ratios kept)."""
        if "max_lr" in policy_parameters(self.name):
            return dataclasses.replace(self, max_lr=float(peak))
        if self.name == "piecewise_linear" and self.knots:
            top = max(lr for _, lr in self.knots)
            if top <= 0:
                raise SettingError("max_lr", "cannot scale a piecewise-linear schedule that is all zeros")
            return dataclasses.replace(self, knots=tuple((pos, lr * peak / top) for pos, lr in self.knots))
        raise SettingError("max_lr", f"has nothing to set in schedule {self.name!r}; use cyclic_lr or one_cycle_lr")

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from None, as JSON takes them (a record's ``config.recipe.schedule``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleSpec:
        """The spec :meth:`to_dict` wrote; also the older layouts (``params`` or ``flags`` beside ``name``)."""
        fields = {k: v for k, v in data.items() if k not in ("params", "flags")}
        fields.update(data.get("params") or {})
        fields.update(data.get("flags") or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise SettingError(unknown[0], "is not a schedule setting")
        return cls(**{k: _tuples(v) for k, v in fields.items()})

    def _units(self, name: str, value: Any, steps_per_epoch: int) -> Any:
        """A duration in units of ``interval``; whole where PyTorch counts whole units."""
        text = str(value)
        amount = float(text.removesuffix("ep"))
        if text.endswith("ep") and self.interval == "step":
            amount *= steps_per_epoch
        if name not in WHOLE_DURATIONS:
            return amount
        if abs(amount - round(amount)) > 1e-9 * max(1.0, amount):
            raise SettingError(name, f"{value} is {amount:g} {self.interval}s; it must be a whole number of "
                                     f"{self.interval}s")
        return round(amount)

    def _convert(self, name: str, value: Any, steps_per_epoch: int) -> Any:
        if name == "milestones":
            return [self._units(name, v, steps_per_epoch) for v in value]
        if name == "knots":
            return [(self._units(name, p, steps_per_epoch) if not self.knots_as_fraction else float(p), lr)
                    for p, lr in value]
        if name in ("step_size", "T_max", "T_0", "step_size_up", "step_size_down", "total_iters"):
            return self._units(name, value, steps_per_epoch)
        return value


def _tuples(value: Any) -> Any:
    """JSON's nested lists as the nested tuples a spec is written with (knots, milestones)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
