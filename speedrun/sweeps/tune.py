"""Equal-budget tuning on Ray Tune: every variant gets the same number of trials over its own space.

A policy that looks better after 20 trials than another after 3 has shown nothing, so each tuned
variant gets its own experiment of ``trials`` trials (Tune's Optuna search; with ``early-stop``,
ASHA ends the trials that trail, by one rule for all). A trial trains with the tuning seed, never
a reported one; stopped, diverged and failed trials count against the budget all the same. A
second start tells the search the trials already in the folder and runs only the rest.
"""
from __future__ import annotations

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
    return optuna


@dataclass(frozen=True)
class TrialResult:
    """One finished tuning trial: its values and its score (None: it did not finish)."""

    index: int
    params: dict[str, FlagValue]
    value: float | None
    status: str = "ok"            # ok, stopped (early), diverged, failed


@dataclass(frozen=True)
class TuneResult:
    label: str
    best: TrialResult | None
    trials: tuple[TrialResult, ...]


def best_of(label: str, trials: Sequence[TrialResult]) -> TuneResult:
    """The winner among the trials that ran to the end (a stopped trial's accuracy is a partial one)."""
    trials = tuple(sorted(trials, key=lambda t: t.index))
    scored = [t for t in trials if t.value is not None and t.status == "ok"]
    best = max(scored, key=lambda t: (t.value, -t.index)) if scored else None
    return TuneResult(label, best, trials)


def search_for(dims: Sequence[SearchDimension], tune: TuneSpec, index: int, earlier: Sequence[TrialResult]) -> Any:
    """Tune's Optuna search over one variant's space, told the trials an earlier start finished."""
    optuna = import_optuna()
    from ray.tune.search.optuna import OptunaSearch

    seed = tune.seed + index
    if tune.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, tune.trials // 2)))
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    told = [t for t in earlier if t.value is not None]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(space={d.flag: _distribution(optuna, d) for d in dims}, metric="accuracy", mode="max",
                        sampler=sampler, points_to_evaluate=[dict(t.params) for t in told] or None,
                        evaluated_rewards=[t.value for t in told] or None)


def scheduler_for(tune: TuneSpec, epochs: int) -> Any:
    """ASHA over epochs when the spec asks for early stopping, else None (every trial runs to the end)."""
    if not tune.early_stop:
        return None
    from ray.tune.schedulers import ASHAScheduler

    # stop_last_trials off: a trial at its last epoch still reports its record before it ends.
    return ASHAScheduler(time_attr="epoch", metric="accuracy", mode="max", max_t=max(epochs, tune.grace_epochs),
                         grace_period=tune.grace_epochs, reduction_factor=tune.reduction_factor,
                         stop_last_trials=False)


def _distribution(optuna: Any, d: SearchDimension) -> Any:
    dist = optuna.distributions
    if d.choices:
        return dist.CategoricalDistribution(list(d.choices))
    assert d.low is not None and d.high is not None
    if d.integer:
        return dist.IntDistribution(int(d.low), int(d.high), log=d.log)
    return dist.FloatDistribution(d.low, d.high, log=d.log)
