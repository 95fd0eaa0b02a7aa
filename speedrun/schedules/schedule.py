"""What a schedule is: per-step learning rates (and momenta), precomputed for the device.

The training loop reads ``lr[t]`` and ``momentum[t]`` from a device tensor indexed by a
device-side step counter, so no step waits on the host and nothing recompiles when the
learning rate changes. Every policy here is therefore evaluated once, up front, for the
whole run.

Semantics follow ``torch.optim.lr_scheduler``: ``schedule.lr[t]`` is the learning rate that
PyTorch's scheduler has put in the optimizer for the optimizer's ``t``-th step, i.e. the
value in effect before its ``t``-th ``scheduler.step()`` call, counting from 0. Each policy
function is named after its PyTorch scheduler in snake_case and takes PyTorch's parameter
names and defaults; the base learning rate, which PyTorch reads from the optimizer, is an
explicit argument. Where PyTorch does something surprising, we match it and say so.

Stepping interval
-----------------
Every policy takes ``interval`` and ``steps_per_epoch``:

* ``interval="step"`` (default): the equivalent PyTorch scheduler is stepped after every
  optimizer step, and duration parameters (``step_size``, ``milestones``, ``T_max``, ``T_0``,
  ``step_size_up``, knot positions, ...) count optimizer steps.
* ``interval="epoch"``: the equivalent scheduler is stepped once per epoch, duration
  parameters count epochs, and each epoch's value is held for all ``steps_per_epoch`` steps
  of that epoch. The last epoch may be partial when ``total_steps`` is not a multiple of
  ``steps_per_epoch``.

``total_steps`` is always the number of optimizer steps, whatever the interval. Mixing these
up is the classic scheduling mistake, so :attr:`Schedule.interval` records which was used.

A schedule as data (every parameter, durations in epochs, warm-up) is :class:`speedrun.schedules.spec.ScheduleSpec`.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from speedrun.checks import int_at_least, one_of, real_in

INTERVALS = ("step", "epoch")
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
CYCLIC_SCALE_MODES = ("cycle", "iterations")
ANNEAL_STRATEGIES = ("cos", "linear")
WARMUP_MODES = ("linear", "constant")


# --------------------------------------------------------------------------------------
# The schedule object
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """A whole run's learning rate (and optionally momentum), one value per optimizer step.

    ``lr`` is float64 on the CPU when built, so the values are exact; :meth:`to` moves it to
    the training device in the dtype the loop wants. ``momentum`` is the per-step momentum
    (or Adam's beta1) for policies that cycle it, else ``None`` (leave the optimizer's own).
    ``params`` are the policy's parameters as given, JSON-serialisable, for the result record.
    ``interval`` says how often the equivalent PyTorch scheduler would be stepped ("step" or
    "epoch"); ``steps_per_epoch`` is recorded when known (always for "epoch").
    """

    lr: torch.Tensor
    momentum: torch.Tensor | None
    name: str
    params: dict
    interval: str
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lr, torch.Tensor) or self.lr.ndim != 1 or len(self.lr) == 0:
            raise ValueError("lr must be a non-empty 1-D tensor")
        if not self.lr.is_floating_point():
            raise ValueError(f"lr must be a floating-point tensor, got {self.lr.dtype}")
        if self.momentum is not None and (
            not isinstance(self.momentum, torch.Tensor) or self.momentum.shape != self.lr.shape
        ):
            raise ValueError("momentum must be None or a tensor of the same shape as lr")
        check_interval(self.interval, self.steps_per_epoch)

    def __len__(self) -> int:
        return len(self.lr)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Schedule:
        """Copy the values to ``device`` as ``dtype`` (float32 by default, what the loop reads)."""
        momentum = None if self.momentum is None else self.momentum.to(device=device, dtype=dtype)
        return dataclasses.replace(self, lr=self.lr.to(device=device, dtype=dtype), momentum=momentum)

    def describe(self, include_values: bool = False) -> dict:
        """A JSON-friendly summary for result records; the per-step values only on request."""
        lr = self.lr.detach().to("cpu", torch.float64)
        summary: dict[str, Any] = {
            "name": self.name,
            "params": self.params,
            "interval": self.interval,
            "steps": len(self),
            "steps_per_epoch": self.steps_per_epoch,
            "lr_first": float(lr[0]),
            "lr_peak": float(lr.max()),
            "lr_last": float(lr[-1]),
            "cycles_momentum": self.momentum is not None,
        }
        if include_values:
            summary["lr"] = lr.tolist()
            if self.momentum is not None:
                summary["momentum"] = self.momentum.detach().to("cpu", torch.float64).tolist()
        return summary


# --------------------------------------------------------------------------------------
# Parameter checks: every user-fixable problem is a ValueError naming the parameter
# --------------------------------------------------------------------------------------


def check_interval(interval: object, steps_per_epoch: object) -> None:
    one_of("interval", interval, INTERVALS)
    if steps_per_epoch is None:
        if interval == "epoch":
            raise ValueError('steps_per_epoch is required when interval="epoch"')
    else:
        int_at_least("steps_per_epoch", steps_per_epoch, 1)


def callable_name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# --------------------------------------------------------------------------------------
# The one shared builder: units (steps or epochs) -> per-step tensor
# --------------------------------------------------------------------------------------

# A policy's curve: scheduler-step indices (an int64 array) -> (lr, momentum or None) per index.
Curve = Callable[[np.ndarray], tuple]


def unit_count(total_steps: int, interval: str = "step", steps_per_epoch: int | None = None) -> int:
    """How many scheduler steps (units) a run of ``total_steps`` optimizer steps spans."""
    int_at_least("total_steps", total_steps, 1)
    check_interval(interval, steps_per_epoch)
    if interval == "step" or steps_per_epoch is None:
        return int(total_steps)
    return -(-int(total_steps) // int(steps_per_epoch))  # ceil: a partial last epoch counts


def _per_step(values: np.ndarray, total_steps: int, interval: str, steps_per_epoch: int | None) -> np.ndarray:
    """Expand per-unit values to per-step values: an epoch's value holds for all its steps."""
    if interval == "step" or steps_per_epoch is None:
        return values
    return np.repeat(values, steps_per_epoch)[:total_steps]


def build_per_step(name: str, params: dict, total_steps: int, interval: str, steps_per_epoch: int | None,
                   curve: Curve) -> Schedule:
    """The one shared builder: evaluate ``curve`` once per scheduler step, then expand to optimizer steps."""
    units = np.arange(unit_count(total_steps, interval, steps_per_epoch), dtype=np.int64)
    lr, momentum = curve(units)
    lr = np.asarray(lr, dtype=np.float64)
    if not np.all(np.isfinite(lr)):
        raise ValueError(f"{name}: the parameters give a non-finite learning rate")
    lr_steps = torch.from_numpy(_per_step(lr, total_steps, interval, steps_per_epoch).copy())
    momentum_steps = None
    if momentum is not None:
        momentum = np.asarray(momentum, dtype=np.float64)
        momentum_steps = torch.from_numpy(_per_step(momentum, total_steps, interval, steps_per_epoch).copy())
    return Schedule(lr=lr_steps, momentum=momentum_steps, name=name, params=params,
                    interval=interval, steps_per_epoch=steps_per_epoch)


# Policies PyTorch's SequentialLR does not restart at a milestone (they continue from the rate before
# it, or keep their cycle position), unlike every other: refused rather than silently done otherwise.
NOT_RESTARTED = ("multiplicative_lr", "cosine_annealing_warm_restarts")


def _one_run(schedules: Sequence[Schedule]) -> list[Schedule]:
    """The schedules a composition joins, refused unless they were all built for the same run."""
    schedules = list(schedules)
    if not schedules or not all(isinstance(x, Schedule) for x in schedules):
        raise ValueError("schedules must be a non-empty sequence of Schedules")
    first = schedules[0]
    for x in schedules[1:]:
        if (len(x), x.interval, x.steps_per_epoch) != (len(first), first.interval, first.steps_per_epoch):
            raise ValueError("schedules must all be built for the same run: the same steps, interval and steps_per_epoch")
    return schedules


def sequential_lr(schedules: Sequence[Schedule], milestones: Sequence[int]) -> Schedule:
    """PyTorch's SequentialLR: ``schedules[0]`` until unit ``milestones[0]``, then ``schedules[1]``
    restarted from its own unit 0, and so on. Build every schedule for the whole run, with the
    same interval and the same base rate (PyTorch's schedulers share the optimizer's initial lr);
    each contributes its first units after its milestone. Momentum, where one schedule cycles
    it, is held at its last value through a schedule that does not (as PyTorch leaves it).
    """
    schedules = _one_run(schedules)
    first = schedules[0]
    refused = [x.name for x in schedules[1:] if x.name in NOT_RESTARTED]
    if refused:
        raise ValueError(f"{refused[0]} after a milestone is not restarted by PyTorch's SequentialLR; put it first")
    milestones = [int_at_least("milestones", m, 1) for m in milestones]
    if len(milestones) != len(schedules) - 1 or any(b <= a for a, b in itertools.pairwise(milestones)):
        raise ValueError(f"milestones must be {len(schedules) - 1} strictly increasing unit indices, got {milestones}")
    per_unit = first.steps_per_epoch if first.interval == "epoch" and first.steps_per_epoch else 1
    starts = [0, *(min(m * per_unit, len(first)) for m in milestones), len(first)]
    lr = torch.cat([x.lr[: b - a] for x, a, b in zip(schedules, starts, starts[1:])])
    momentum = None
    if any(x.momentum is not None for x in schedules):
        if first.momentum is None:
            raise ValueError("a schedule that cycles momentum must come first: the momentum before it is unknown")
        parts, last = [], first.momentum[0]
        for x, a, b in zip(schedules, starts, starts[1:]):
            part = x.momentum[: b - a] if x.momentum is not None else last.expand(b - a)
            parts.append(part)
            last = part[-1] if len(part) else last
        momentum = torch.cat(parts)
    params = {"milestones": milestones, "schedules": [{"name": x.name, "params": x.params} for x in schedules]}
    return Schedule(lr, momentum, "sequential_lr", params, first.interval, first.steps_per_epoch)


# Policies whose PyTorch step multiplies the rate it finds, so that chained they multiply each other.
CHAINABLE = ("constant_lr", "linear_lr", "step_lr", "multistep_lr", "exponential_lr", "polynomial_lr", "multiplicative_lr")


def chained_scheduler(schedules: Sequence[Schedule]) -> Schedule:
    """PyTorch's ChainedScheduler: every schedule steps at every unit, each scaling the rate the one
    before it left, so the rate is the shared base rate times the product of each schedule's factor
    (its rate over the base). That holds for the policies whose step multiplies the current rate
    (:data:`CHAINABLE`); the others overwrite it, and are refused. Build every schedule for the
    whole run, with the same interval and base rate.
    """
    schedules = _one_run(schedules)
    first = schedules[0]
    unchained = [x.name for x in schedules if x.name not in CHAINABLE]
    if unchained:
        raise ValueError(f"{unchained[0]} does not chain (its step sets the rate rather than scaling it); "
                         f"chain {', '.join(CHAINABLE)}")
    bases = {float(x.params.get("base_lr", math.nan)) for x in schedules}
    if len(bases) != 1:
        raise ValueError(f"schedules must share one base_lr (the optimizer's), got {sorted(bases)}")
    base = bases.pop()
    lr = torch.full_like(first.lr, base)
    for x in schedules:
        lr = lr * (x.lr / base) if base > 0 else x.lr * 0
    params = {"schedules": [{"name": x.name, "params": x.params} for x in schedules]}
    return Schedule(lr, None, "chained_scheduler", params, first.interval, first.steps_per_epoch)


def with_warmup(schedule: Schedule, warmup_steps: int, mode: str = "linear",
                start_factor: float = 1.0 / 3) -> Schedule:
    """Prefix ``schedule`` with ``warmup_steps`` steps of warmup towards its first value.

    This is SequentialLR([LinearLR(start_factor, end_factor=1, total_iters=W), main],
    milestones=[W]) (or ConstantLR(factor=start_factor, total_iters=W) for
    ``mode="constant"``), stepped at the schedule's interval, with the optimizer's lr equal
    to ``schedule.lr[0]``: the warmup runs from ``start_factor * lr[0]`` (linearly towards
    ``lr[0]``, or held), then ``schedule`` starts from its own step 0. The result is
    ``warmup_steps`` longer than ``schedule``, so build the main schedule for the remaining
    steps. For an epoch-interval schedule ``warmup_steps`` must be whole epochs and the
    warmup value is held per epoch. Momentum, if cycled, holds its first value during warmup.
    Unlike LinearLR, ``start_factor`` may be 0 (warmup from zero).
    """
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    warmup_steps = int_at_least("warmup_steps", warmup_steps, 0)
    mode = one_of("mode", mode, WARMUP_MODES)
    start_factor = real_in("start_factor", start_factor, low=0, high=1)
    if warmup_steps == 0:
        return schedule
    per_unit = 1
    if schedule.interval == "epoch" and schedule.steps_per_epoch is not None:
        per_unit = schedule.steps_per_epoch
        if warmup_steps % per_unit:
            raise ValueError(f"warmup_steps ({warmup_steps}) must be whole epochs of {per_unit} steps "
                             "for an epoch-interval schedule")
    n_warm = warmup_steps // per_unit
    lr0 = float(schedule.lr[0])
    u = np.arange(n_warm, dtype=np.float64)
    if mode == "linear":
        factors = start_factor + (1.0 - start_factor) * u / n_warm
    else:
        factors = np.full(n_warm, start_factor)
    warm = torch.from_numpy(np.repeat(lr0 * factors, per_unit)).to(schedule.lr.dtype)
    lr = torch.cat([warm.to(schedule.lr.device), schedule.lr])
    momentum = schedule.momentum
    if momentum is not None:
        momentum = torch.cat([momentum[:1].expand(warmup_steps), momentum])
    params = dict(schedule.params)
    params["warmup"] = {"steps": warmup_steps, "mode": mode, "start_factor": start_factor}
    return dataclasses.replace(schedule, lr=lr, momentum=momentum, params=params)
