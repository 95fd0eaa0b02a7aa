"""Equal-budget tuning: every variant gets the same number of trials over its own search space.

A fair comparison of learning-rate policies tunes each one as hard as the others: a policy that
looks better after 20 trials than another after 3 has shown nothing. Each arm gets an Optuna
study (TPE, or random search) driven by ask and tell, so the trials of all arms run side by side
on the sweep's workers. A trial trains one run with the tuning seed (``[tune] seed``, apart from
the sweep's seeds, so the seeded runs that are reported are never the ones tuned on) and scores
its final test accuracy; a diverged or failed trial scores nothing and counts against the budget
all the same. The best trial's values then run with the sweep's seeds.

A trial's file holds its values, so a sweep started again tells the study every finished trial
and asks only for the rest (the trials then asked differ from an uninterrupted sweep's, as the
sampler's state is not saved; the budget stays the same).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from speedrun.errors import SpeedrunError
from speedrun.sweeps.spec import FlagValue, SearchDimension, TuneSpec

OPTUNA_HINT = "a [tune] block needs Optuna: pip install 'speedrun[sweep]' (or: pip install optuna)"


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SpeedrunError(OPTUNA_HINT) from None
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


@dataclass(frozen=True)
class TrialResult:
    index: int
    params: dict[str, FlagValue]
    value: float | None          # the trial's final test accuracy; None: it diverged or failed


@dataclass(frozen=True)
class TuneResult:
    """An arm's search: its best values (None when no trial finished) and every trial's score."""

    label: str
    best: TrialResult | None
    trials: tuple[TrialResult, ...]


class ArmStudy:
    """One arm's search space and the study that samples it."""

    def __init__(self, label: str, dims: Sequence[SearchDimension], tune: TuneSpec, index: int) -> None:
        optuna = import_optuna()
        self.label, self.tune = label, tune
        self.distributions = {d.flag: _distribution(optuna, d) for d in dims}
        seed = tune.seed + index
        if tune.sampler == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, tune.trials // 2)))
        else:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self._optuna = optuna
        self._asked: dict[int, Any] = {}
        self.results: dict[int, TrialResult] = {}

    def add_finished(self, result: TrialResult) -> None:
        """A trial finished by an earlier start of the sweep, told to the study as it ended."""
        state = self._optuna.trial.TrialState
        self.study.add_trial(self._optuna.trial.create_trial(
            params=dict(result.params), distributions=self.distributions, value=result.value,
            state=state.COMPLETE if result.value is not None else state.FAIL))
        self.results[result.index] = result

    def ask(self, index: int) -> dict[str, FlagValue]:
        trial = self.study.ask(self.distributions)
        self._asked[index] = trial
        return dict(trial.params)

    def tell(self, index: int, value: float | None) -> None:
        trial = self._asked.pop(index)
        state = self._optuna.trial.TrialState
        if value is None:
            self.study.tell(trial, state=state.FAIL)
        else:
            self.study.tell(trial, value)
        self.results[index] = TrialResult(index, dict(trial.params), value)

    def result(self) -> TuneResult:
        trials = tuple(self.results[i] for i in sorted(self.results))
        scored = [t for t in trials if t.value is not None]
        best = max(scored, key=lambda t: (t.value, -t.index)) if scored else None
        return TuneResult(self.label, best, trials)


def _distribution(optuna: Any, d: SearchDimension) -> Any:
    dist = optuna.distributions
    if d.choices:
        return dist.CategoricalDistribution(list(d.choices))
    assert d.low is not None and d.high is not None
    if d.integer:
        return dist.IntDistribution(int(d.low), int(d.high), log=d.log)
    return dist.FloatDistribution(d.low, d.high, log=d.log)


def trial_value(record: dict | None) -> float | None:
    """A trial's score: its run's final test accuracy, or None when it did not finish."""
    if record is None:
        return None
    run = (record.get("runs") or [{}])[0]
    acc = run.get("final_test_acc")
    return float(acc) if run.get("status") == "ok" and acc is not None else None
