"""sequential_lr against PyTorch's SequentialLR, step for step, per step and per epoch: fixed
combinations and random ones, momentum held through a schedule that leaves it alone, and the
compositions PyTorch would not restart refused."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch.optim import lr_scheduler as tls

from speedrun import schedules as S
from tests.schedules.test_policies import FAST, check, epoch_sizes, lrs

# (ours from (steps, interval, steps_per_epoch, base lr), theirs from (optimizer)) pairs of one kind each
PARTS = {
    "linear": (lambda n, i, s, b: S.linear_lr(n, b, 0.1, 1.0, 4, interval=i, steps_per_epoch=s),
               lambda o: tls.LinearLR(o, 0.1, 1.0, 4)),
    "constant": (lambda n, i, s, b: S.constant_lr(n, b, 0.5, 3, interval=i, steps_per_epoch=s),
                 lambda o: tls.ConstantLR(o, 0.5, 3)),
    "exponential": (lambda n, i, s, b: S.exponential_lr(n, b, 0.93, interval=i, steps_per_epoch=s),
                    lambda o: tls.ExponentialLR(o, 0.93)),
    "step": (lambda n, i, s, b: S.step_lr(n, b, 5, 0.5, interval=i, steps_per_epoch=s),
             lambda o: tls.StepLR(o, 5, 0.5)),
    "multistep": (lambda n, i, s, b: S.multistep_lr(n, b, [3, 9], 0.2, interval=i, steps_per_epoch=s),
                  lambda o: tls.MultiStepLR(o, [3, 9], 0.2)),
    "cosine": (lambda n, i, s, b: S.cosine_annealing_lr(n, b, 20, 0.001, interval=i, steps_per_epoch=s),
               lambda o: tls.CosineAnnealingLR(o, 20, 0.001)),
    "polynomial": (lambda n, i, s, b: S.polynomial_lr(n, b, 12, 2.0, interval=i, steps_per_epoch=s),
                   lambda o: tls.PolynomialLR(o, 12, 2.0)),
}


def compose(names: list[str], milestones: list[int], base: float):
    def ours(n, i, s):
        return S.sequential_lr([PARTS[name][0](n, i, s, base) for name in names], milestones)

    def theirs(o, _units):
        return tls.SequentialLR(o, [PARTS[name][1](o) for name in names], milestones)
    return ours, theirs


@pytest.mark.parametrize("names, milestones", [
    (["linear", "cosine"], [4]),                       # warm-up, then cosine: the common case
    (["constant", "exponential", "step"], [3, 10]),
    (["step", "multistep", "polynomial"], [6, 15]),
    (["cosine", "linear", "cosine"], [8, 12]),
])
@pytest.mark.parametrize("steps_per_epoch", [None, 7])
def test_sequential_lr_matches_pytorch(names, milestones, steps_per_epoch):
    ours, theirs = compose(names, milestones, 0.2)
    check(ours, theirs, 7 * 30 - 3 if steps_per_epoch else 97, steps_per_epoch=steps_per_epoch, init_lr=0.2)


@FAST
@given(st.lists(st.sampled_from(sorted(PARTS)), min_size=1, max_size=4), st.data(), epoch_sizes, lrs,
       st.integers(1, 120))
def test_random_sequences_match_pytorch(names, data, spe, base, total):
    milestones = sorted(data.draw(st.sets(st.integers(1, 40), min_size=len(names) - 1, max_size=len(names) - 1)))
    ours, theirs = compose(names, milestones, base)
    check(ours, theirs, total, steps_per_epoch=spe, init_lr=base)


def test_momentum_is_held_through_a_schedule_that_leaves_it_alone():
    cycle = S.one_cycle_lr(60, 0.4)
    after = S.step_lr(60, 0.4, 10)
    seq = S.sequential_lr([cycle, after], [30])
    assert seq.momentum is not None and float(seq.momentum[30]) == float(cycle.momentum[29])
    assert seq.params["milestones"] == [30] and [p["name"] for p in seq.params["schedules"]] == ["one_cycle_lr", "step_lr"]


@pytest.mark.parametrize("make, says", [
    (lambda: S.sequential_lr([S.step_lr(10, 0.1, 3), S.multiplicative_lr(10, 0.1, lambda t: 0.9)], [5]),
     "multiplicative_lr after a milestone is not restarted"),
    (lambda: S.sequential_lr([S.step_lr(10, 0.1, 3), S.step_lr(12, 0.1, 3)], [5]), "the same run"),
    (lambda: S.sequential_lr([S.step_lr(10, 0.1, 3), S.step_lr(10, 0.1, 3)], []), "1 strictly increasing"),
    (lambda: S.sequential_lr([S.step_lr(10, 0.1, 3), S.one_cycle_lr(10, 0.1)], [5]), "must come first"),
])
def test_what_sequential_lr_refuses(make, says):
    with pytest.raises(ValueError, match=says):
        make()


# ---------------------------------------------------------------------------------------------
# chained_scheduler against ChainedScheduler

CHAINABLE_PARTS = sorted({"linear", "constant", "exponential", "step", "multistep", "polynomial"})


def chain(names: list[str], base: float):
    def ours(n, i, s):
        return S.chained_scheduler([PARTS[name][0](n, i, s, base) for name in names])

    def theirs(o, _units):
        return tls.ChainedScheduler([PARTS[name][1](o) for name in names])
    return ours, theirs


@pytest.mark.parametrize("names", [["constant", "exponential"], ["linear", "step"], ["multistep", "polynomial", "linear"]])
@pytest.mark.parametrize("steps_per_epoch", [None, 7])
def test_chained_scheduler_matches_pytorch(names, steps_per_epoch):
    ours, theirs = chain(names, 0.3)
    check(ours, theirs, 7 * 30 - 3 if steps_per_epoch else 97, steps_per_epoch=steps_per_epoch, init_lr=0.3)


@FAST
@given(st.lists(st.sampled_from(CHAINABLE_PARTS), min_size=1, max_size=4), epoch_sizes, lrs, st.integers(1, 120))
def test_random_chains_match_pytorch(names, spe, base, total):
    ours, theirs = chain(names, base)
    check(ours, theirs, total, steps_per_epoch=spe, init_lr=base)


def test_a_chained_multiplicative_lr_multiplies_in():
    ours = S.chained_scheduler([S.multiplicative_lr(20, 0.1, lambda t: 0.9), S.step_lr(20, 0.1, 5, 0.5)])
    check(lambda n, i, s: S.chained_scheduler([S.multiplicative_lr(n, 0.1, lambda t: 0.9, interval=i, steps_per_epoch=s),
                                               S.step_lr(n, 0.1, 5, 0.5, interval=i, steps_per_epoch=s)]),
          lambda o, u: tls.ChainedScheduler([tls.MultiplicativeLR(o, lambda t: 0.9), tls.StepLR(o, 5, 0.5)]), 20)
    assert ours.name == "chained_scheduler" and ours.momentum is None


@pytest.mark.parametrize("make, says", [
    (lambda: S.chained_scheduler([S.step_lr(10, 0.1, 3), S.cosine_annealing_lr(10, 0.1)]), "cosine_annealing_lr does not chain"),
    (lambda: S.chained_scheduler([S.step_lr(10, 0.1, 3), S.step_lr(10, 0.2, 3)]), "share one base_lr"),
    (lambda: S.chained_scheduler([]), "non-empty"),
    (lambda: S.chained_scheduler([S.step_lr(10, 0.1, 3), S.step_lr(12, 0.1, 3)]), "the same run"),
    (lambda: S.chained_scheduler([S.step_lr(10, 0.1, 3), S.step_lr(10, 0.1, 3, interval="epoch", steps_per_epoch=2)]),
     "the same run"),
])
def test_what_chained_scheduler_refuses(make, says):
    with pytest.raises(ValueError, match=says):
        make()
