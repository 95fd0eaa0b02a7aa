"""Schedules must reproduce PyTorch's schedulers step for step, per step and per epoch."""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as tls

from speedrun import schedules as S

RTOL = 1e-6
FAST = settings(max_examples=40, deadline=None, derandomize=True)

# --------------------------------------------------------------------------------------
# Reference: drive PyTorch's own scheduler on a dummy SGD optimizer
# --------------------------------------------------------------------------------------


def torch_values(make: Callable[[torch.optim.Optimizer, int], object], total_steps: int, *,
                 init_lr: float = 0.1, steps_per_epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The lr and momentum PyTorch uses for each optimizer step, stepping the scheduler
    after every optimizer step, or after every ``steps_per_epoch`` steps when given."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=init_lr, momentum=0.5)
    n_units = total_steps if steps_per_epoch is None else -(-total_steps // steps_per_epoch)
    every = 1 if steps_per_epoch is None else steps_per_epoch
    lrs, momenta = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = make(optimizer, n_units)
        for t in range(total_steps):
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            momenta.append(float(optimizer.param_groups[0]["momentum"]))
            optimizer.step()
            if (t + 1) % every == 0 and t + 1 < total_steps:
                scheduler.step()
    return np.asarray(lrs), np.asarray(momenta)


def assert_matches(ours: torch.Tensor, theirs: np.ndarray) -> None:
    """Relative error <= 1e-6; values that are exactly zero in exact arithmetic (a
    recursion's rounding leaves ~1e-17 there) get an absolute slack of 1e-12 of the scale."""
    ours_np = ours.numpy()
    assert ours_np.shape == theirs.shape
    scale = max(float(np.max(np.abs(theirs))), 1e-300)
    np.testing.assert_allclose(ours_np, theirs, rtol=RTOL, atol=1e-12 * scale)


def check(ours: Callable[[int, str, int | None], S.Schedule], theirs, total_steps: int, *,
          steps_per_epoch: int | None = None, init_lr: float = 0.1, momentum: bool = False) -> None:
    interval = "step" if steps_per_epoch is None else "epoch"
    schedule = ours(total_steps, interval, steps_per_epoch)
    ref_lr, ref_momentum = torch_values(theirs, total_steps, init_lr=init_lr, steps_per_epoch=steps_per_epoch)
    assert len(schedule) == total_steps and schedule.interval == interval
    assert_matches(schedule.lr, ref_lr)
    if momentum:
        assert schedule.momentum is not None
        assert_matches(schedule.momentum, ref_momentum)
    else:
        assert schedule.momentum is None


# --------------------------------------------------------------------------------------
# Grid: (ours, theirs, lr the optimizer starts with, cycles momentum)
# --------------------------------------------------------------------------------------

def _knots_lambda(knots):
    xs, ys = zip(*knots)
    return lambda t: float(np.interp(t, xs, ys))


GRID = {
    "step_lr-7-0.5": (lambda n, i, s: S.step_lr(n, 0.1, 7, 0.5, interval=i, steps_per_epoch=s),
                      lambda o, u: tls.StepLR(o, 7, 0.5), 0.1, False),
    "step_lr-1-0.9": (lambda n, i, s: S.step_lr(n, 0.4, 1, 0.9, interval=i, steps_per_epoch=s),
                      lambda o, u: tls.StepLR(o, 1, 0.9), 0.4, False),
    "step_lr-default-gamma": (lambda n, i, s: S.step_lr(n, 1.0, 30, interval=i, steps_per_epoch=s),
                              lambda o, u: tls.StepLR(o, 30), 1.0, False),
    "multistep_lr": (lambda n, i, s: S.multistep_lr(n, 0.1, [3, 10, 10, 25], 0.3, interval=i, steps_per_epoch=s),
                     lambda o, u: tls.MultiStepLR(o, [3, 10, 10, 25], 0.3), 0.1, False),
    "multistep_lr-at-0": (lambda n, i, s: S.multistep_lr(n, 0.1, [0, 5], interval=i, steps_per_epoch=s),
                          lambda o, u: tls.MultiStepLR(o, [0, 5]), 0.1, False),
    "multistep_lr-none": (lambda n, i, s: S.multistep_lr(n, 0.1, [], interval=i, steps_per_epoch=s),
                          lambda o, u: tls.MultiStepLR(o, []), 0.1, False),
    "exponential_lr-decay": (lambda n, i, s: S.exponential_lr(n, 0.2, 0.97, interval=i, steps_per_epoch=s),
                             lambda o, u: tls.ExponentialLR(o, 0.97), 0.2, False),
    "exponential_lr-grow": (lambda n, i, s: S.exponential_lr(n, 0.01, 1.01, interval=i, steps_per_epoch=s),
                            lambda o, u: tls.ExponentialLR(o, 1.01), 0.01, False),
    "cosine-50": (lambda n, i, s: S.cosine_annealing_lr(n, 0.1, 50, interval=i, steps_per_epoch=s),
                  lambda o, u: tls.CosineAnnealingLR(o, 50), 0.1, False),
    "cosine-past-T_max": (lambda n, i, s: S.cosine_annealing_lr(n, 0.1, 17, 0.001, interval=i, steps_per_epoch=s),
                          lambda o, u: tls.CosineAnnealingLR(o, 17, 0.001), 0.1, False),
    "cosine-T_max-1": (lambda n, i, s: S.cosine_annealing_lr(n, 0.1, 1, interval=i, steps_per_epoch=s),
                       lambda o, u: tls.CosineAnnealingLR(o, 1), 0.1, False),
    "cosine-default-T_max": (lambda n, i, s: S.cosine_annealing_lr(n, 0.3, interval=i, steps_per_epoch=s),
                             lambda o, u: tls.CosineAnnealingLR(o, u), 0.3, False),
    "sgdr-10": (lambda n, i, s: S.cosine_annealing_warm_restarts(n, 0.1, 10, interval=i, steps_per_epoch=s),
                lambda o, u: tls.CosineAnnealingWarmRestarts(o, 10), 0.1, False),
    "sgdr-3x2": (lambda n, i, s: S.cosine_annealing_warm_restarts(n, 0.1, 3, 2, 0.01, interval=i, steps_per_epoch=s),
                 lambda o, u: tls.CosineAnnealingWarmRestarts(o, 3, 2, 0.01), 0.1, False),
    "sgdr-1x3": (lambda n, i, s: S.cosine_annealing_warm_restarts(n, 0.5, 1, 3, interval=i, steps_per_epoch=s),
                 lambda o, u: tls.CosineAnnealingWarmRestarts(o, 1, 3), 0.5, False),
    "cyclic-triangular": (lambda n, i, s: S.cyclic_lr(n, 0.01, 0.1, 10, interval=i, steps_per_epoch=s),
                          lambda o, u: tls.CyclicLR(o, 0.01, 0.1, 10), 0.05, True),
    "cyclic-triangular2": (lambda n, i, s: S.cyclic_lr(n, 0.01, 0.1, 5, 13, "triangular2", interval=i,
                                                       steps_per_epoch=s),
                           lambda o, u: tls.CyclicLR(o, 0.01, 0.1, 5, 13, "triangular2"), 0.05, True),
    "cyclic-exp_range": (lambda n, i, s: S.cyclic_lr(n, 0.001, 0.1, 4, mode="exp_range", gamma=0.99,
                                                     base_momentum=0.7, max_momentum=0.95, interval=i,
                                                     steps_per_epoch=s),
                         lambda o, u: tls.CyclicLR(o, 0.001, 0.1, 4, mode="exp_range", gamma=0.99,
                                                   base_momentum=0.7, max_momentum=0.95), 0.05, True),
    "cyclic-fractional-no-momentum": (
        lambda n, i, s: S.cyclic_lr(n, 0.02, 0.2, 2.5, 3.7, cycle_momentum=False, interval=i, steps_per_epoch=s),
        lambda o, u: tls.CyclicLR(o, 0.02, 0.2, 2.5, 3.7, cycle_momentum=False), 0.05, False),
    "cyclic-scale_fn-cycle": (
        lambda n, i, s: S.cyclic_lr(n, 0.01, 0.1, 6, scale_fn=lambda x: 1 / x, interval=i, steps_per_epoch=s),
        lambda o, u: tls.CyclicLR(o, 0.01, 0.1, 6, scale_fn=lambda x: 1 / x), 0.05, True),
    "cyclic-scale_fn-iterations": (
        lambda n, i, s: S.cyclic_lr(n, 0.01, 0.1, 6, scale_fn=lambda x: 1 / (1 + x), scale_mode="iterations",
                                    interval=i, steps_per_epoch=s),
        lambda o, u: tls.CyclicLR(o, 0.01, 0.1, 6, scale_fn=lambda x: 1 / (1 + x), scale_mode="iterations"),
        0.05, True),
    "one_cycle-default": (lambda n, i, s: S.one_cycle_lr(n, 0.4, interval=i, steps_per_epoch=s),
                          lambda o, u: tls.OneCycleLR(o, 0.4, total_steps=u), 0.1, True),
    "one_cycle-linear": (lambda n, i, s: S.one_cycle_lr(n, 0.4, 0.25, "linear", div_factor=10, final_div_factor=100,
                                                        interval=i, steps_per_epoch=s),
                         lambda o, u: tls.OneCycleLR(o, 0.4, total_steps=u, pct_start=0.25,
                                                     anneal_strategy="linear", div_factor=10,
                                                     final_div_factor=100), 0.1, True),
    "one_cycle-three-phase": (lambda n, i, s: S.one_cycle_lr(n, 1.0, 0.3, three_phase=True, interval=i,
                                                             steps_per_epoch=s),
                              lambda o, u: tls.OneCycleLR(o, 1.0, total_steps=u, three_phase=True), 0.1, True),
    "one_cycle-three-phase-linear": (
        lambda n, i, s: S.one_cycle_lr(n, 1.0, 0.15, "linear", three_phase=True, interval=i, steps_per_epoch=s),
        lambda o, u: tls.OneCycleLR(o, 1.0, total_steps=u, pct_start=0.15, anneal_strategy="linear",
                                    three_phase=True), 0.1, True),
    "one_cycle-short-warmup": (lambda n, i, s: S.one_cycle_lr(n, 0.4, 0.013, interval=i, steps_per_epoch=s),
                               lambda o, u: tls.OneCycleLR(o, 0.4, total_steps=u, pct_start=0.013), 0.1, True),
    "one_cycle-no-momentum": (lambda n, i, s: S.one_cycle_lr(n, 0.4, cycle_momentum=False, interval=i,
                                                             steps_per_epoch=s),
                              lambda o, u: tls.OneCycleLR(o, 0.4, total_steps=u, cycle_momentum=False), 0.1, False),
    "constant_lr": (lambda n, i, s: S.constant_lr(n, 0.1, 0.5, 7, interval=i, steps_per_epoch=s),
                    lambda o, u: tls.ConstantLR(o, 0.5, 7), 0.1, False),
    "constant_lr-default": (lambda n, i, s: S.constant_lr(n, 0.1, interval=i, steps_per_epoch=s),
                            lambda o, u: tls.ConstantLR(o), 0.1, False),
    "linear_lr-default": (lambda n, i, s: S.linear_lr(n, 0.1, interval=i, steps_per_epoch=s),
                          lambda o, u: tls.LinearLR(o), 0.1, False),
    "linear_lr-to-zero": (lambda n, i, s: S.linear_lr(n, 0.1, 0.9, 0.0, 20, interval=i, steps_per_epoch=s),
                          lambda o, u: tls.LinearLR(o, 0.9, 0.0, 20), 0.1, False),
    "polynomial_lr": (lambda n, i, s: S.polynomial_lr(n, 0.1, 30, 2.0, interval=i, steps_per_epoch=s),
                      lambda o, u: tls.PolynomialLR(o, 30, 2.0), 0.1, False),
    "polynomial_lr-sqrt": (lambda n, i, s: S.polynomial_lr(n, 0.1, 5, 0.5, interval=i, steps_per_epoch=s),
                           lambda o, u: tls.PolynomialLR(o, 5, 0.5), 0.1, False),
    "lambda_lr-exp": (lambda n, i, s: S.lambda_lr(n, 0.1, lambda t: 0.95**t, interval=i, steps_per_epoch=s),
                      lambda o, u: tls.LambdaLR(o, lambda t: 0.95**t), 0.1, False),
    "lambda_lr-inverse": (lambda n, i, s: S.lambda_lr(n, 0.3, lambda t: 1 / (1 + t), interval=i, steps_per_epoch=s),
                          lambda o, u: tls.LambdaLR(o, lambda t: 1 / (1 + t)), 0.3, False),
    "multiplicative_lr-0.95": (lambda n, i, s: S.multiplicative_lr(n, 0.1, lambda t: 0.95, interval=i,
                                                                     steps_per_epoch=s),
                               lambda o, u: tls.MultiplicativeLR(o, lambda t: 0.95), 0.1, False),
    "multiplicative_lr-varying": (lambda n, i, s: S.multiplicative_lr(n, 0.3, lambda t: 1.1 if t % 3 else 0.5,
                                                                        interval=i, steps_per_epoch=s),
                                  lambda o, u: tls.MultiplicativeLR(o, lambda t: 1.1 if t % 3 else 0.5), 0.3, False),
    "piecewise_linear": (lambda n, i, s: S.piecewise_linear(n, [(0, 0.0), (4.5, 0.4), (30, 0.0)], interval=i,
                                                            steps_per_epoch=s),
                         lambda o, u: tls.LambdaLR(o, _knots_lambda([(0, 0.0), (4.5, 0.4), (30, 0.0)])), 1.0, False),
    "piecewise_linear-outside": (
        lambda n, i, s: S.piecewise_linear(n, [(-3, 0.1), (12.25, 0.3), (20, 0.05)], interval=i, steps_per_epoch=s),
        lambda o, u: tls.LambdaLR(o, _knots_lambda([(-3, 0.1), (12.25, 0.3), (20, 0.05)])), 1.0, False),
}


@pytest.mark.parametrize("case", sorted(GRID))
def test_grid_per_step_matches_pytorch(case: str) -> None:
    ours, theirs, init_lr, momentum = GRID[case]
    check(ours, theirs, 97, init_lr=init_lr, momentum=momentum)


@pytest.mark.parametrize("case", sorted(GRID))
def test_grid_per_epoch_matches_pytorch_stepped_per_epoch(case: str) -> None:
    ours, theirs, init_lr, momentum = GRID[case]
    # 7 steps per epoch, 40 epochs, the last one partial.
    check(ours, theirs, 7 * 40 - 3, steps_per_epoch=7, init_lr=init_lr, momentum=momentum)


def test_grid_covers_every_registered_policy() -> None:
    covered = {case.split("-")[0] for case in GRID}
    aliases = {"cosine": "cosine_annealing_lr", "sgdr": "cosine_annealing_warm_restarts",
               "cyclic": "cyclic_lr", "one_cycle": "one_cycle_lr"}
    assert {aliases.get(c, c) for c in covered} == set(S.SCHEDULES)


def test_epoch_interval_holds_each_epoch_value() -> None:
    schedule = S.step_lr(50, 1.0, 2, 0.5, interval="epoch", steps_per_epoch=10)
    lr = schedule.lr.numpy()
    assert np.all(lr[:20] == 1.0) and np.all(lr[20:40] == 0.5) and np.all(lr[40:] == 0.25)
    assert schedule.steps_per_epoch == 10
    assert S.unit_count(50, "epoch", 10) == 5 and S.unit_count(51, "epoch", 10) == 6 and S.unit_count(51) == 51


def test_step_and_epoch_intervals_differ_for_the_same_numbers() -> None:
    per_step = S.cosine_annealing_lr(100, 0.1, 10, interval="step")
    per_epoch = S.cosine_annealing_lr(100, 0.1, 10, interval="epoch", steps_per_epoch=10)
    assert per_step.interval == "step" and per_epoch.interval == "epoch"
    assert not torch.equal(per_step.lr, per_epoch.lr)


# --------------------------------------------------------------------------------------
# Randomised parameters
# --------------------------------------------------------------------------------------

lrs = st.floats(1e-4, 10.0)
gammas = st.floats(0.05, 1.5)
totals = st.integers(1, 150)
epoch_sizes = st.one_of(st.none(), st.integers(1, 12))


def _interval(spe: int | None) -> str:
    return "step" if spe is None else "epoch"


@FAST
@given(totals, epoch_sizes, lrs, st.integers(1, 40), gammas)
def test_random_step_lr(n, spe, lr, step_size, gamma) -> None:
    check(lambda n, i, s: S.step_lr(n, lr, step_size, gamma, interval=i, steps_per_epoch=s),
          lambda o, u: tls.StepLR(o, step_size, gamma), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.lists(st.integers(0, 150), max_size=6), gammas)
def test_random_multistep_lr(n, spe, lr, milestones, gamma) -> None:
    milestones = sorted(milestones)
    check(lambda n, i, s: S.multistep_lr(n, lr, milestones, gamma, interval=i, steps_per_epoch=s),
          lambda o, u: tls.MultiStepLR(o, milestones, gamma), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.floats(0.8, 1.05))
def test_random_exponential_lr(n, spe, lr, gamma) -> None:
    check(lambda n, i, s: S.exponential_lr(n, lr, gamma, interval=i, steps_per_epoch=s),
          lambda o, u: tls.ExponentialLR(o, gamma), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.integers(1, 200), st.floats(0.0, 1.0))
def test_random_cosine_annealing_lr(n, spe, lr, t_max, eta_fraction) -> None:
    eta_min = lr * eta_fraction
    check(lambda n, i, s: S.cosine_annealing_lr(n, lr, t_max, eta_min, interval=i, steps_per_epoch=s),
          lambda o, u: tls.CosineAnnealingLR(o, t_max, eta_min), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.integers(1, 30), st.integers(1, 4), st.floats(0.0, 1.0))
def test_random_cosine_annealing_warm_restarts(n, spe, lr, t_0, t_mult, eta_fraction) -> None:
    eta_min = lr * eta_fraction
    check(lambda n, i, s: S.cosine_annealing_warm_restarts(n, lr, t_0, t_mult, eta_min, interval=i,
                                                           steps_per_epoch=s),
          lambda o, u: tls.CosineAnnealingWarmRestarts(o, t_0, t_mult, eta_min), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.floats(1.0, 20.0), st.floats(0.0, 10.0),
       st.one_of(st.none(), st.floats(0.5, 20.0)), st.sampled_from(S.CYCLIC_MODES), st.floats(0.9, 1.0),
       st.booleans(), st.floats(0.0, 0.9), st.floats(0.0, 0.1))
def test_random_cyclic_lr(n, spe, lr, ratio, up, down, mode, gamma, cycle_momentum, base_m, extra_m) -> None:
    up = max(up, 0.25)
    kwargs = dict(step_size_up=up, step_size_down=down, mode=mode, gamma=gamma, cycle_momentum=cycle_momentum,
                  base_momentum=base_m, max_momentum=base_m + extra_m)
    check(lambda n, i, s: S.cyclic_lr(n, lr, lr * ratio, interval=i, steps_per_epoch=s, **kwargs),
          lambda o, u: tls.CyclicLR(o, lr, lr * ratio, **kwargs), n, steps_per_epoch=spe, init_lr=lr,
          momentum=cycle_momentum)


@FAST
@given(totals, epoch_sizes, lrs, st.floats(0.01, 0.99), st.sampled_from(S.ANNEAL_STRATEGIES), st.booleans(),
       st.booleans(), st.floats(1.0, 100.0), st.floats(1.0, 1e5))
def test_random_one_cycle_lr(n, spe, max_lr, pct, strategy, three_phase, cycle_momentum, div, final_div) -> None:
    units = n if spe is None else -(-n // spe)
    phase = pct * units
    if abs(phase - 1.0) < 1e-9 or (three_phase and units > 1 and abs(2 * phase - 2 - (units - 1)) < 1e-9):
        return  # a zero-length phase: PyTorch divides by zero there (see test_one_cycle_zero_length_phase)
    kwargs = dict(pct_start=pct, anneal_strategy=strategy, three_phase=three_phase,
                  cycle_momentum=cycle_momentum, div_factor=div, final_div_factor=final_div)
    check(lambda n, i, s: S.one_cycle_lr(n, max_lr, interval=i, steps_per_epoch=s, **kwargs),
          lambda o, u: tls.OneCycleLR(o, max_lr, total_steps=u, **kwargs), n, steps_per_epoch=spe,
          momentum=cycle_momentum)


@FAST
@given(totals, epoch_sizes, lrs, st.floats(0.0, 1.0), st.integers(1, 60))
def test_random_constant_lr(n, spe, lr, factor, total_iters) -> None:
    factor = max(factor, 1e-3)  # PyTorch divides by the factor
    check(lambda n, i, s: S.constant_lr(n, lr, factor, total_iters, interval=i, steps_per_epoch=s),
          lambda o, u: tls.ConstantLR(o, factor, total_iters), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.floats(0.01, 1.0), st.floats(0.0, 1.0), st.integers(1, 60))
def test_random_linear_lr(n, spe, lr, start, end, total_iters) -> None:
    check(lambda n, i, s: S.linear_lr(n, lr, start, end, total_iters, interval=i, steps_per_epoch=s),
          lambda o, u: tls.LinearLR(o, start, end, total_iters), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.integers(1, 60), st.floats(0.0, 3.0))
def test_random_polynomial_lr(n, spe, lr, total_iters, power) -> None:
    check(lambda n, i, s: S.polynomial_lr(n, lr, total_iters, power, interval=i, steps_per_epoch=s),
          lambda o, u: tls.PolynomialLR(o, total_iters, power), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.floats(0.5, 1.1), st.integers(1, 50))
def test_random_lambda_lr(n, spe, lr, base, period) -> None:
    fn = lambda t: base ** (t % period) + 0.1  # noqa: E731
    check(lambda n, i, s: S.lambda_lr(n, lr, fn, interval=i, steps_per_epoch=s),
          lambda o, u: tls.LambdaLR(o, fn), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, lrs, st.floats(0.8, 1.05), st.integers(1, 20))
def test_random_multiplicative_lr(n, spe, lr, factor, period) -> None:
    fn = lambda t: factor if t % period else 1.0 / factor  # noqa: E731
    check(lambda n, i, s: S.multiplicative_lr(n, lr, fn, interval=i, steps_per_epoch=s),
          lambda o, u: tls.MultiplicativeLR(o, fn), n, steps_per_epoch=spe, init_lr=lr)


@FAST
@given(totals, epoch_sizes, st.lists(st.tuples(st.floats(-20, 200), st.floats(0.0, 2.0)), min_size=1, max_size=6,
                                     unique_by=lambda k: round(k[0], 6)))
def test_random_piecewise_linear(n, spe, knots) -> None:
    knots = sorted(knots)
    check(lambda n, i, s: S.piecewise_linear(n, knots, interval=i, steps_per_epoch=s),
          lambda o, u: tls.LambdaLR(o, _knots_lambda(knots)), n, steps_per_epoch=spe, init_lr=1.0)


# --------------------------------------------------------------------------------------
# Documented PyTorch behaviour we reproduce, and where we deliberately differ
# --------------------------------------------------------------------------------------


def test_one_cycle_last_step_is_the_final_lr() -> None:
    schedule = S.one_cycle_lr(100, 0.4, div_factor=20, final_div_factor=50)
    assert float(schedule.lr[0]) == pytest.approx(0.4 / 20)
    assert float(schedule.lr.max()) == pytest.approx(0.4)
    assert float(schedule.lr[-1]) == pytest.approx(0.4 / 20 / 50)
    assert float(schedule.momentum[-1]) == pytest.approx(0.95)


def test_one_cycle_zero_length_phase_uses_the_phase_start() -> None:
    # pct_start * total_steps == 1: PyTorch raises ZeroDivisionError on its first step.
    with pytest.raises(ZeroDivisionError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tls.OneCycleLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9),
                       0.4, total_steps=10, pct_start=0.1)
    schedule = S.one_cycle_lr(10, 0.4, pct_start=0.1)
    assert float(schedule.lr[0]) == pytest.approx(0.4 / 25)
    # From step 1 on it is PyTorch's second phase, as PyTorch would compute it.
    assert torch.all(schedule.lr[1:] <= 0.4) and float(schedule.lr[-1]) == pytest.approx(0.4 / 25 / 1e4)


def test_cosine_annealing_continues_past_t_max() -> None:
    schedule = S.cosine_annealing_lr(40, 1.0, 10)
    assert float(schedule.lr[10]) == pytest.approx(0.0, abs=1e-15)
    assert float(schedule.lr[20]) == pytest.approx(1.0)  # back up: PyTorch does not clamp


def test_cyclic_lr_momentum_moves_against_lr() -> None:
    schedule = S.cyclic_lr(40, 0.1, 1.0, 10, base_momentum=0.8, max_momentum=0.9)
    peak = int(torch.argmax(schedule.lr))
    assert float(schedule.momentum[0]) == pytest.approx(0.9) and float(schedule.momentum[peak]) == pytest.approx(0.8)


def test_multistep_repeated_milestone_applies_twice() -> None:
    schedule = S.multistep_lr(10, 1.0, [5, 5], 0.5)
    assert float(schedule.lr[4]) == 1.0 and float(schedule.lr[5]) == 0.25


def test_constant_lr_with_zero_factor_restores_base_lr() -> None:
    schedule = S.constant_lr(10, 0.1, 0.0, 3)
    assert schedule.lr.tolist() == [0.0] * 3 + [0.1] * 7


# --------------------------------------------------------------------------------------
# Warmup against SequentialLR
# --------------------------------------------------------------------------------------

WARMUP_MAINS = {
    "cosine": (lambda n, i, s: S.cosine_annealing_lr(n, 0.2, 30, 0.01, interval=i, steps_per_epoch=s),
               lambda o: tls.CosineAnnealingLR(o, 30, 0.01)),
    "step": (lambda n, i, s: S.step_lr(n, 0.2, 6, 0.5, interval=i, steps_per_epoch=s),
             lambda o: tls.StepLR(o, 6, 0.5)),
    "exponential": (lambda n, i, s: S.exponential_lr(n, 0.2, 0.95, interval=i, steps_per_epoch=s),
                    lambda o: tls.ExponentialLR(o, 0.95)),
    "sgdr": (lambda n, i, s: S.cosine_annealing_warm_restarts(n, 0.2, 5, 2, interval=i, steps_per_epoch=s),
             lambda o: tls.CosineAnnealingWarmRestarts(o, 5, 2)),
}


@pytest.mark.parametrize("main", sorted(WARMUP_MAINS))
@pytest.mark.parametrize("mode", S.WARMUP_MODES)
@pytest.mark.parametrize("spe", [None, 4])
def test_warmup_matches_sequential_lr(main: str, mode: str, spe: int | None) -> None:
    ours, theirs = WARMUP_MAINS[main]
    warm_units, total = 5, 4 * 25 - 1
    warm_steps = warm_units * (spe or 1)
    interval = _interval(spe)

    def make_ours(n, i, s):
        return S.with_warmup(ours(n - warm_steps, i, s), warm_steps, mode, start_factor=0.25)

    def make_theirs(o, u):
        first = (tls.LinearLR(o, 0.25, 1.0, warm_units) if mode == "linear"
                 else tls.ConstantLR(o, 0.25, warm_units))
        return tls.SequentialLR(o, [first, theirs(o)], milestones=[warm_units])

    check(make_ours, make_theirs, total, steps_per_epoch=spe, init_lr=0.2)
    assert make_ours(total, interval, spe).params["warmup"] == {"steps": warm_steps, "mode": mode,
                                                                "start_factor": 0.25}


def test_warmup_from_zero_and_momentum_hold() -> None:
    main = S.one_cycle_lr(90, 0.4)
    warmed = S.with_warmup(main, 10, start_factor=0.0)
    assert len(warmed) == 100 and float(warmed.lr[0]) == 0.0
    assert torch.equal(warmed.lr[10:], main.lr)
    assert torch.all(warmed.momentum[:10] == main.momentum[0])
    assert S.with_warmup(main, 0) is main


def test_warmup_on_epoch_schedule_needs_whole_epochs() -> None:
    main = S.step_lr(100, 0.1, 2, interval="epoch", steps_per_epoch=10)
    with pytest.raises(ValueError, match="warmup_steps"):
        S.with_warmup(main, 15)


# --------------------------------------------------------------------------------------
# Bad parameters
# --------------------------------------------------------------------------------------

BAD = [
    (lambda: S.step_lr(0, 0.1, 5), "total_steps"),
    (lambda: S.step_lr(-3, 0.1, 5), "total_steps"),
    (lambda: S.step_lr(10.0, 0.1, 5), "total_steps"),
    (lambda: S.step_lr(10, -0.1, 5), "base_lr"),
    (lambda: S.step_lr(10, math.nan, 5), "base_lr"),
    (lambda: S.step_lr(10, 0.1, 0), "step_size"),
    (lambda: S.step_lr(10, 0.1, 2.5), "step_size"),
    (lambda: S.step_lr(10, 0.1, 5, gamma=0.0), "gamma"),
    (lambda: S.exponential_lr(10, 0.1, -0.5), "gamma"),
    (lambda: S.multistep_lr(10, 0.1, [5, 3]), "milestones"),
    (lambda: S.multistep_lr(10, 0.1, [-1, 3]), "milestones"),
    (lambda: S.multistep_lr(10, 0.1, "3,5"), "milestones"),
    (lambda: S.cosine_annealing_lr(10, 0.1, 0), "T_max"),
    (lambda: S.cosine_annealing_lr(10, 0.1, eta_min=-1.0), "eta_min"),
    (lambda: S.cosine_annealing_warm_restarts(10, 0.1, 0), "T_0"),
    (lambda: S.cosine_annealing_warm_restarts(10, 0.1, 5, 0), "T_mult"),
    (lambda: S.cosine_annealing_warm_restarts(10, 0.1, 5, 1.5), "T_mult"),
    (lambda: S.cyclic_lr(10, 0.1, 0.05), "max_lr"),
    (lambda: S.cyclic_lr(10, 0.01, 0.1, mode="sawtooth"), "mode"),
    (lambda: S.cyclic_lr(10, 0.01, 0.1, step_size_up=0), "step_size_up"),
    (lambda: S.cyclic_lr(10, 0.01, 0.1, step_size_down=-2), "step_size_down"),
    (lambda: S.cyclic_lr(10, 0.01, 0.1, mode="exp_range", gamma=0), "gamma"),
    (lambda: S.cyclic_lr(10, 0.01, 0.1, scale_fn=lambda x: 1.0, scale_mode="epochs"), "scale_mode"),
    (lambda: S.cyclic_lr(10, 0.01, 0.1, base_momentum=0.95, max_momentum=0.9), "base_momentum"),
    (lambda: S.one_cycle_lr(10, 0.1, pct_start=0.0), "pct_start"),
    (lambda: S.one_cycle_lr(10, 0.1, pct_start=1.0), "pct_start"),
    (lambda: S.one_cycle_lr(10, 0.1, pct_start=1.5), "pct_start"),
    (lambda: S.one_cycle_lr(10, 0.1, anneal_strategy="exp"), "anneal_strategy"),
    (lambda: S.one_cycle_lr(10, 0.1, div_factor=0), "div_factor"),
    (lambda: S.one_cycle_lr(10, 0.1, final_div_factor=-1), "final_div_factor"),
    (lambda: S.one_cycle_lr(10, 0.1, max_momentum=1.5), "max_momentum"),
    (lambda: S.constant_lr(10, 0.1, 1.5), "factor"),
    (lambda: S.constant_lr(10, 0.1, 0.5, 0), "total_iters"),
    (lambda: S.linear_lr(10, 0.1, 0.0), "start_factor"),
    (lambda: S.linear_lr(10, 0.1, 0.5, 1.2), "end_factor"),
    (lambda: S.polynomial_lr(10, 0.1, power=-1.0), "power"),
    (lambda: S.lambda_lr(10, 0.1, 3.0), "lr_lambda"),
    (lambda: S.lambda_lr(10, 0.1, lambda t: -1.0), "lr_lambda"),
    (lambda: S.lambda_lr(10, 0.1, lambda t: math.inf), "lr_lambda"),
    (lambda: S.multiplicative_lr(10, 0.1, 0.9), "lr_lambda"),
    (lambda: S.multiplicative_lr(10, 0.1, lambda t: -0.5), "lr_lambda"),
    (lambda: S.piecewise_linear(10, []), "knots"),
    (lambda: S.piecewise_linear(10, [(0, 0.1), (0, 0.2)]), "knots"),
    (lambda: S.piecewise_linear(10, [(5, 0.1), (2, 0.2)]), "knots"),
    (lambda: S.piecewise_linear(10, [(0, -0.1)]), "knots"),
    (lambda: S.piecewise_linear(10, [(0, 0.1, 3)]), "knots"),
    (lambda: S.step_lr(10, 0.1, 5, interval="epoch"), "steps_per_epoch"),
    (lambda: S.step_lr(10, 0.1, 5, interval="epoch", steps_per_epoch=0), "steps_per_epoch"),
    (lambda: S.step_lr(10, 0.1, 5, interval="batch"), "interval"),
    (lambda: S.with_warmup(S.step_lr(10, 0.1, 5), -1), "warmup_steps"),
    (lambda: S.with_warmup(S.step_lr(10, 0.1, 5), 3, mode="cosine"), "mode"),
    (lambda: S.with_warmup(S.step_lr(10, 0.1, 5), 3, start_factor=2.0), "start_factor"),
    (lambda: S.build_schedule("warp_speed", 10, steps_per_epoch=5), "one_cycle_lr"),
    (lambda: S.build_schedule("step_lr", 10, steps_per_epoch=5, base_lr=0.1, step_size=2, T_0=3), "T_0"),
    (lambda: S.build_schedule("step_lr", 10, steps_per_epoch=5, base_lr=0.1), "step_size"),
]


@pytest.mark.parametrize("make, name", BAD, ids=[f"{i}-{name}" for i, (_, name) in enumerate(BAD)])
def test_bad_parameters_raise_value_error_naming_them(make, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make()


# --------------------------------------------------------------------------------------
# Schedule object and registry
# --------------------------------------------------------------------------------------


def test_schedule_to_len_and_describe() -> None:
    schedule = S.one_cycle_lr(50, 0.4)
    assert len(schedule) == 50 and schedule.lr.dtype == torch.float64
    moved = schedule.to("cpu")
    assert moved.lr.dtype == torch.float32 and moved.momentum.dtype == torch.float32
    assert moved.name == schedule.name and moved.params == schedule.params
    torch.testing.assert_close(moved.lr, schedule.lr.float())

    summary = schedule.describe()
    assert summary["name"] == "one_cycle_lr" and summary["steps"] == 50 and summary["interval"] == "step"
    assert summary["params"]["max_lr"] == 0.4 and "lr" not in summary
    assert summary["lr_peak"] == pytest.approx(0.4)
    json.dumps(summary)
    full = schedule.describe(include_values=True)
    assert len(full["lr"]) == 50 and len(full["momentum"]) == 50
    json.dumps(full)


def test_params_are_json_serialisable_for_every_policy() -> None:
    made = [ours(60, "step", None) for ours, *_ in GRID.values()]
    made.append(S.with_warmup(S.step_lr(50, 0.1, 5), 10))
    for schedule in made:
        json.dumps(schedule.describe())


def test_registry_is_immutable_and_complete() -> None:
    with pytest.raises(TypeError):
        S.SCHEDULES["mine"] = S.step_lr  # type: ignore[index]
    assert {"step_lr", "multistep_lr", "exponential_lr", "cosine_annealing_lr", "cosine_annealing_warm_restarts",
            "cyclic_lr", "one_cycle_lr", "lambda_lr", "multiplicative_lr", "piecewise_linear"} <= set(S.SCHEDULES)


def test_build_schedule_equals_direct_call() -> None:
    built = S.build_schedule("cosine-annealing-warm-restarts", 100, steps_per_epoch=10, interval="epoch",
                             base_lr=0.1, T_0=3, T_mult=2)
    direct = S.cosine_annealing_warm_restarts(100, 0.1, 3, 2, interval="epoch", steps_per_epoch=10)
    assert torch.equal(built.lr, direct.lr) and built.interval == "epoch"
    lam = S.build_schedule("lambda_lr", 10, steps_per_epoch=5, base_lr=1.0, lr_lambda=lambda t: 1.0 / (t + 1))
    assert float(lam.lr[3]) == 0.25
