"""The policies: one function per PyTorch scheduler, with its parameter names and defaults.

Each returns a :class:`~speedrun.schedules.schedule.Schedule` whose ``lr[t]`` (and
``momentum[t]``) is what the PyTorch scheduler puts in the optimizer for its ``t``-th step;
the semantics, and the per-step versus per-epoch ``interval``, are in
:mod:`speedrun.schedules.schedule`. Where PyTorch does something surprising, we match it and
say so in the docstring.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from speedrun.checks import int_at_least, one_of, real_in
from speedrun.errors import SettingError
from speedrun.schedules.schedule import (
    ANNEAL_STRATEGIES,
    CYCLIC_MODES,
    CYCLIC_SCALE_MODES,
    Schedule,
    build_per_step,
    callable_name,
    unit_count,
)

# --------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------


def constant_lr(total_steps: int, base_lr: float, factor: float = 1.0 / 3, total_iters: int = 5, *,
                interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's ConstantLR: ``base_lr * factor`` for the first ``total_iters`` units, then ``base_lr``.

    ``factor=1`` gives a plain constant schedule. PyTorch divides by ``factor`` to undo it,
    so it crashes for ``factor=0``; we give ``base_lr`` there. ``total_iters`` must be >= 1
    (with 0 PyTorch's stepped and closed forms disagree).
    """
    base_lr = real_in("base_lr", base_lr, low=0)
    factor = real_in("factor", factor, low=0, high=1)
    total_iters = int_at_least("total_iters", total_iters, 1)

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        return base_lr * np.where(u < total_iters, factor, 1.0), None

    params = {"base_lr": base_lr, "factor": factor, "total_iters": total_iters}
    return build_per_step("constant_lr", params, total_steps, interval, steps_per_epoch, curve)


def linear_lr(total_steps: int, base_lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
              total_iters: int = 5, *, interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's LinearLR: the factor moves linearly from ``start_factor`` to ``end_factor``
    over ``total_iters`` units, then stays at ``end_factor``."""
    base_lr = real_in("base_lr", base_lr, low=0)
    start_factor = real_in("start_factor", start_factor, low=0, high=1, low_open=True)
    end_factor = real_in("end_factor", end_factor, low=0, high=1)
    total_iters = int_at_least("total_iters", total_iters, 1)

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        done = np.minimum(u, total_iters)
        return base_lr * (start_factor + (end_factor - start_factor) * done / total_iters), None

    params = {"base_lr": base_lr, "start_factor": start_factor, "end_factor": end_factor,
              "total_iters": total_iters}
    return build_per_step("linear_lr", params, total_steps, interval, steps_per_epoch, curve)


def step_lr(total_steps: int, base_lr: float, step_size: int, gamma: float = 0.1, *,
            interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's StepLR: multiply by ``gamma`` every ``step_size`` units.

    PyTorch multiplies recursively; we use the closed form ``base_lr * gamma**(t // step_size)``,
    equal to rounding.
    """
    base_lr = real_in("base_lr", base_lr, low=0)
    step_size = int_at_least("step_size", step_size, 1)
    gamma = real_in("gamma", gamma, low=0, low_open=True)

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        return base_lr * gamma ** (u // step_size).astype(np.float64), None

    params = {"base_lr": base_lr, "step_size": step_size, "gamma": gamma}
    return build_per_step("step_lr", params, total_steps, interval, steps_per_epoch, curve)


def multistep_lr(total_steps: int, base_lr: float, milestones: Sequence[int], gamma: float = 0.1, *,
                 interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's MultiStepLR: multiply by ``gamma`` at each milestone (a unit index).

    As in PyTorch, a milestone listed n times multiplies by ``gamma**n``, and a milestone
    at 0 already applies to the first step. Milestones must be non-negative integers in
    non-decreasing order.
    """
    base_lr = real_in("base_lr", base_lr, low=0)
    gamma = real_in("gamma", gamma, low=0, low_open=True)
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise SettingError("milestones", f"must be a sequence of integers, got {milestones!r}")
    marks = [int_at_least("milestones", m, 0) for m in milestones]
    if any(b < a for a, b in itertools.pairwise(marks)):
        raise SettingError("milestones", f"must be sorted in non-decreasing order, got {marks}")

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        passed = np.searchsorted(np.asarray(marks, dtype=np.int64), u, side="right")
        return base_lr * gamma ** passed.astype(np.float64), None

    params = {"base_lr": base_lr, "milestones": marks, "gamma": gamma}
    return build_per_step("multistep_lr", params, total_steps, interval, steps_per_epoch, curve)


def exponential_lr(total_steps: int, base_lr: float, gamma: float, *,
                   interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's ExponentialLR: multiply by ``gamma`` every unit (closed form, equal to rounding)."""
    base_lr = real_in("base_lr", base_lr, low=0)
    gamma = real_in("gamma", gamma, low=0, low_open=True)

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        return base_lr * gamma ** u.astype(np.float64), None

    params = {"base_lr": base_lr, "gamma": gamma}
    return build_per_step("exponential_lr", params, total_steps, interval, steps_per_epoch, curve)


def polynomial_lr(total_steps: int, base_lr: float, total_iters: int = 5, power: float = 1.0, *,
                  interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's PolynomialLR: ``base_lr * (1 - min(t, total_iters) / total_iters) ** power``."""
    base_lr = real_in("base_lr", base_lr, low=0)
    total_iters = int_at_least("total_iters", total_iters, 1)
    power = real_in("power", power, low=0)

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        return base_lr * (1.0 - np.minimum(u, total_iters) / total_iters) ** power, None

    params = {"base_lr": base_lr, "total_iters": total_iters, "power": power}
    return build_per_step("polynomial_lr", params, total_steps, interval, steps_per_epoch, curve)


def _cosine(base_lr: float, eta_min: float, t: np.ndarray, period: np.ndarray | int) -> np.ndarray:
    """Half-cosine from ``base_lr`` (t=0) to ``eta_min`` (t=period), in PyTorch's operation order."""
    return eta_min + (base_lr - eta_min) * (1 + np.cos(np.pi * t / period)) / 2


def cosine_annealing_lr(total_steps: int, base_lr: float, T_max: int | None = None, eta_min: float = 0.0, *,
                        interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's CosineAnnealingLR: half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` units.

    PyTorch steps a recursive form; it agrees with the closed form used here to rounding as
    long as nothing else changes the optimizer's lr. Like both of PyTorch's forms, past
    ``T_max`` the cosine continues back up towards ``base_lr`` (period ``2*T_max``): it does
    not stay at ``eta_min``. ``T_max`` defaults to the schedule's length in units (PyTorch
    requires it); with that default ``eta_min`` is reached one unit after the last step.
    """
    base_lr = real_in("base_lr", base_lr, low=0)
    eta_min = real_in("eta_min", eta_min, low=0)
    if T_max is None:
        T_max = unit_count(total_steps, interval, steps_per_epoch)
    T_max = int_at_least("T_max", T_max, 1)

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        return _cosine(base_lr, eta_min, u, T_max), None

    params = {"base_lr": base_lr, "T_max": T_max, "eta_min": eta_min}
    return build_per_step("cosine_annealing_lr", params, total_steps, interval, steps_per_epoch, curve)


def cosine_annealing_warm_restarts(total_steps: int, base_lr: float, T_0: int, T_mult: int = 1,
                                   eta_min: float = 0.0, *, interval: str = "step",
                                   steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's CosineAnnealingWarmRestarts (SGDR): cosine cycles restarting at ``base_lr``.

    The first cycle lasts ``T_0`` units and each next one ``T_mult`` times longer. As in
    PyTorch stepped without an epoch argument, a cycle restarts at ``base_lr`` one unit
    before it would reach ``eta_min``, so the lr never equals ``eta_min`` exactly.
    """
    base_lr = real_in("base_lr", base_lr, low=0)
    T_0 = int_at_least("T_0", T_0, 1)
    T_mult = int_at_least("T_mult", T_mult, 1)
    eta_min = real_in("eta_min", eta_min, low=0)
    n_units = unit_count(total_steps, interval, steps_per_epoch)

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        starts, lengths = [0], [T_0]
        while starts[-1] + lengths[-1] < n_units:  # integer cycle boundaries, no logarithms
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * T_mult)
        cycle = np.searchsorted(np.asarray(starts, dtype=np.int64), u, side="right") - 1
        t_cur = u - np.asarray(starts, dtype=np.int64)[cycle]
        return _cosine(base_lr, eta_min, t_cur, np.asarray(lengths, dtype=np.int64)[cycle]), None

    params = {"base_lr": base_lr, "T_0": T_0, "T_mult": T_mult, "eta_min": eta_min}
    return build_per_step("cosine_annealing_warm_restarts", params, total_steps, interval, steps_per_epoch, curve)


def cyclic_lr(total_steps: int, base_lr: float, max_lr: float, step_size_up: float = 2000,
              step_size_down: float | None = None, mode: str = "triangular", gamma: float = 1.0,
              scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle",
              cycle_momentum: bool = True, base_momentum: float = 0.8, max_momentum: float = 0.9, *,
              interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's CyclicLR: triangle cycles between ``base_lr`` and ``max_lr``.

    Matches PyTorch, including its surprises: the schedule starts at ``base_lr`` whatever the
    optimizer's lr was; momentum is cycled inversely (``max_momentum`` at ``base_lr``,
    ``base_momentum`` at the peak) and follows the same amplitude scaling; ``exp_range``
    scales by ``gamma ** t`` with ``t`` the total unit count, not the count within the cycle;
    a given ``scale_fn`` overrides ``mode``, and without one ``scale_mode`` is set by ``mode``
    (cycle for the triangular modes, iterations for ``exp_range``). ``step_size_up`` and
    ``step_size_down`` may be fractional, as in PyTorch. We additionally require
    ``max_lr >= base_lr`` and ``base_momentum <= max_momentum``.
    """
    base_lr = real_in("base_lr", base_lr, low=0)
    max_lr = real_in("max_lr", max_lr, low=0)
    if max_lr < base_lr:
        raise SettingError("max_lr", f"({max_lr}) must be >= {{base_lr}} ({base_lr})")
    up = real_in("step_size_up", step_size_up, low=0, low_open=True)
    down = up if step_size_down is None else real_in("step_size_down", step_size_down, low=0, low_open=True)
    gamma = real_in("gamma", gamma, low=0, low_open=True)
    if scale_fn is None:
        mode = one_of("mode", mode, CYCLIC_MODES)
        scale_mode = "iterations" if mode == "exp_range" else "cycle"
    elif not callable(scale_fn):
        raise ValueError(f"scale_fn must be callable, got {scale_fn!r}")
    else:
        scale_mode = one_of("scale_mode", scale_mode, CYCLIC_SCALE_MODES)
    if cycle_momentum:
        base_momentum = real_in("base_momentum", base_momentum, low=0, high=1)
        max_momentum = real_in("max_momentum", max_momentum, low=0, high=1)
        if base_momentum > max_momentum:
            raise SettingError("base_momentum", f"({base_momentum}) must be <= {{max_momentum}} ({max_momentum})")

    def scale(x: np.ndarray) -> np.ndarray:
        if scale_fn is not None:
            return np.asarray([float(scale_fn(v)) for v in x.tolist()], dtype=np.float64)
        if mode == "triangular":
            return np.ones(len(x))
        if mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return gamma ** x.astype(np.float64)

    def curve(u: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        total_size = up + down
        step_ratio = up / total_size
        cycle = np.floor(1 + u / total_size)
        x = 1.0 + u / total_size - cycle
        rising = x <= step_ratio
        scale_factor = np.where(rising, x / step_ratio, (x - 1) / (step_ratio - 1 if step_ratio != 1 else 1.0))
        amplitude = scale(cycle.astype(np.int64) if scale_mode == "cycle" else u)
        lr = base_lr + (max_lr - base_lr) * scale_factor * amplitude
        if not cycle_momentum:
            return lr, None
        return lr, max_momentum - (max_momentum - base_momentum) * scale_factor * amplitude

    params = {"base_lr": base_lr, "max_lr": max_lr, "step_size_up": step_size_up,
              "step_size_down": step_size_down, "mode": mode, "gamma": gamma,
              "scale_fn": None if scale_fn is None else callable_name(scale_fn),
              "scale_mode": scale_mode, "cycle_momentum": bool(cycle_momentum)}
    if cycle_momentum:
        params.update(base_momentum=base_momentum, max_momentum=max_momentum)
    return build_per_step("cyclic_lr", params, total_steps, interval, steps_per_epoch, curve)


def _anneal(strategy: str, start: float, end: float, pct: np.ndarray) -> np.ndarray:
    if strategy == "cos":
        return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1)
    return (end - start) * pct + start


def one_cycle_lr(total_steps: int, max_lr: float, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False, *,
                 interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's OneCycleLR: warm up from ``max_lr/div_factor`` to ``max_lr``, then anneal down
    to ``max_lr/div_factor/final_div_factor`` (with ``three_phase``, first back to the start
    value, then down).

    PyTorch's cycle is ``total_steps`` scheduler steps long (here: the schedule's length in
    units), and its phases end at the fractional steps ``pct_start*n - 1`` (and
    ``2*pct_start*n - 2``) and ``n - 1``: the last optimizer step runs at exactly the final
    lr, and the lr that PyTorch computes on the final ``scheduler.step()`` is never used.
    Momentum is cycled inversely (and stays at ``max_momentum`` in the third phase).
    Unlike PyTorch's ``OneCycleLR(epochs=, steps_per_epoch=)``, which still steps per batch,
    ``steps_per_epoch`` here only matters with ``interval="epoch"``.
    Deviations: where a phase has zero length (``pct_start*n == 1``) PyTorch divides by zero;
    we use the phase's start value. ``pct_start`` must lie strictly inside (0, 1) (PyTorch
    also allows 0 and 1), and ``base_momentum <= max_momentum``.
    """
    max_lr = real_in("max_lr", max_lr, low=0)
    pct_start = real_in("pct_start", pct_start, low=0, high=1, low_open=True, high_open=True)
    anneal_strategy = one_of("anneal_strategy", anneal_strategy, ANNEAL_STRATEGIES)
    div_factor = real_in("div_factor", div_factor, low=0, low_open=True)
    final_div_factor = real_in("final_div_factor", final_div_factor, low=0, low_open=True)
    if cycle_momentum:
        base_momentum = real_in("base_momentum", base_momentum, low=0, high=1)
        max_momentum = real_in("max_momentum", max_momentum, low=0, high=1)
        if base_momentum > max_momentum:
            raise SettingError("base_momentum", f"({base_momentum}) must be <= {{max_momentum}} ({max_momentum})")
    n_units = unit_count(total_steps, interval, steps_per_epoch)
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor

    # (end unit, start lr, end lr, start momentum, end momentum) per phase, as PyTorch lays them out.
    if three_phase:
        phases = [
            (float(pct_start * n_units) - 1, initial_lr, max_lr, max_momentum, base_momentum),
            (float(2 * pct_start * n_units) - 2, max_lr, initial_lr, base_momentum, max_momentum),
            (n_units - 1, initial_lr, min_lr, max_momentum, max_momentum),
        ]
    else:
        phases = [
            (float(pct_start * n_units) - 1, initial_lr, max_lr, max_momentum, base_momentum),
            (n_units - 1, max_lr, min_lr, base_momentum, max_momentum),
        ]

    def curve(u: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        t = u.astype(np.float64)
        lr = np.empty_like(t)
        momentum = np.empty_like(t)
        todo = np.ones(len(t), dtype=bool)
        start = 0.0
        for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
            here = todo & ((t <= end) | (i == len(phases) - 1))
            span = end - start
            pct = (t[here] - start) / span if span != 0 else np.zeros(int(here.sum()))
            lr[here] = _anneal(anneal_strategy, lr0, lr1, pct)
            if cycle_momentum:
                momentum[here] = _anneal(anneal_strategy, m0, m1, pct)
            todo &= ~here
            start = end
        return lr, (momentum if cycle_momentum else None)

    params = {"max_lr": max_lr, "pct_start": pct_start, "anneal_strategy": anneal_strategy,
              "cycle_momentum": bool(cycle_momentum), "div_factor": div_factor,
              "final_div_factor": final_div_factor, "three_phase": bool(three_phase)}
    if cycle_momentum:
        params.update(base_momentum=base_momentum, max_momentum=max_momentum)
    return build_per_step("one_cycle_lr", params, total_steps, interval, steps_per_epoch, curve)


def lambda_lr(total_steps: int, base_lr: float, lr_lambda: Callable[[int], float], *,
              interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's LambdaLR: ``base_lr * lr_lambda(t)`` for unit index ``t``.

    ``lr_lambda`` is called once per unit, here and now, so it must be a pure function of
    its argument. A non-finite or negative factor is a ValueError.
    """
    base_lr = real_in("base_lr", base_lr, low=0)
    if not callable(lr_lambda):
        raise ValueError(f"lr_lambda must be callable, got {lr_lambda!r}")

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        factors = np.asarray([float(lr_lambda(t)) for t in u.tolist()], dtype=np.float64)
        bad = ~np.isfinite(factors) | (factors < 0)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(f"lr_lambda({first}) returned {factors[first]}; factors must be finite and >= 0")
        return base_lr * factors, None

    params = {"base_lr": base_lr, "lr_lambda": callable_name(lr_lambda)}
    return build_per_step("lambda_lr", params, total_steps, interval, steps_per_epoch, curve)


def multiplicative_lr(total_steps: int, base_lr: float, lr_lambda: Callable[[int], float], *,
                      interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """PyTorch's MultiplicativeLR: each unit ``t >= 1`` multiplies the last rate by ``lr_lambda(t)``,
    so unit ``t`` runs at ``base_lr * lr_lambda(1) * ... * lr_lambda(t)``, multiplied in PyTorch's
    order. ``lr_lambda`` is called once per unit, here and now; a non-finite or negative factor is
    a ValueError.
    """
    base_lr = real_in("base_lr", base_lr, low=0)
    if not callable(lr_lambda):
        raise ValueError(f"lr_lambda must be callable, got {lr_lambda!r}")

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        factors = np.asarray([float(lr_lambda(t)) for t in range(1, int(u.max()) + 1)], dtype=np.float64)
        bad = ~np.isfinite(factors) | (factors < 0)
        if bad.any():
            first = int(np.argmax(bad)) + 1
            raise ValueError(f"lr_lambda({first}) returned {factors[first - 1]}; factors must be finite and >= 0")
        return np.cumprod(np.concatenate([[base_lr], factors]))[u], None

    params = {"base_lr": base_lr, "lr_lambda": callable_name(lr_lambda)}
    return build_per_step("multiplicative_lr", params, total_steps, interval, steps_per_epoch, curve)


def piecewise_linear(total_steps: int, knots: Sequence[tuple[float, float]], *,
                     interval: str = "step", steps_per_epoch: int | None = None) -> Schedule:
    """Linear interpolation between ``(position, lr)`` knots, constant before the first and
    after the last: the form fast CIFAR-10 recipes use (e.g. ``[(0, 0), (5*spe, 0.4), (30*spe, 0)]``).

    Positions are in units (steps, or epochs for ``interval="epoch"``), may be fractional,
    and must be strictly increasing. PyTorch has no such scheduler; it equals LambdaLR with
    an interpolating lambda.
    """
    if isinstance(knots, (str, bytes)) or not isinstance(knots, Sequence) or len(knots) == 0:
        raise SettingError("knots", f"must be a non-empty sequence of (position, lr) pairs, got {knots!r}")
    xs, ys = [], []
    for knot in knots:
        if isinstance(knot, (str, bytes)) or not isinstance(knot, Sequence) or len(knot) != 2:
            raise SettingError("knots", f"must hold (position, lr) pairs, got {knot!r}")
        xs.append(real_in("knots", knot[0]))
        ys.append(real_in("knots", knot[1], low=0))
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise SettingError("knots", f"positions must be strictly increasing, got {xs}")

    def curve(u: np.ndarray) -> tuple[np.ndarray, None]:
        return np.interp(u.astype(np.float64), xs, ys), None

    params = {"knots": [[x, y] for x, y in zip(xs, ys)]}
    return build_per_step("piecewise_linear", params, total_steps, interval, steps_per_epoch, curve)
