"""Equal-budget tuning's parts that need no trial: ASHA's rungs as ``[tune]`` sets them."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("ray.tune")

from ray.tune.schedulers import TrialScheduler

from speedrun.sweeps.spec import TuneSpec
from speedrun.sweeps.tune import scheduler_for


def first_stops(tune: TuneSpec, epochs: int, scores: list[float]) -> list[int | None]:
    """The epoch at which ASHA stops each trial (None: it ran to the end), the trials reporting in
    turn each epoch with a constant accuracy."""
    scheduler = scheduler_for(tune, epochs)
    trials = [SimpleNamespace(trial_id=str(i)) for i in range(len(scores))]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    stopped: list[int | None] = [None] * len(trials)
    for epoch in range(1, epochs + 1):
        for i, trial in enumerate(trials):
            if stopped[i] is None and scheduler.on_trial_result(
                    None, trial, {"epoch": epoch, "accuracy": scores[i]}) == TrialScheduler.STOP:
                stopped[i] = epoch
    return stopped


BEST_FIRST = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]


def test_without_early_stop_every_trial_runs_to_the_end():
    assert scheduler_for(TuneSpec(trials=8), 6) is None


@pytest.mark.parametrize("grace", [1, 2, 3])
def test_no_trial_is_stopped_before_grace_epochs(grace):
    stops = first_stops(TuneSpec(trials=8, early_stop=True, grace_epochs=grace), 6, BEST_FIRST)
    assert min(s for s in stops if s is not None) == grace and stops[0] is None, stops


def test_about_one_in_reduction_factor_trials_goes_on_past_the_first_rung():
    scores = [((i * 37) % 40) / 40 for i in range(40)]      # 40 distinct accuracies in a scrambled order
    for factor in (2, 4):
        went_on = sum(s != 1 for s in first_stops(TuneSpec(trials=40, early_stop=True, reduction_factor=factor), 2, scores))
        assert 40 / factor * 0.6 <= went_on <= 40 / factor * 1.6, (factor, went_on)
