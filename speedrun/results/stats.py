"""The statistics every report uses, one implementation each, computed by scipy.

A claim of "94%" is a mean over seeded runs with its confidence interval, and a time is a
distribution, not a best case, so every summary carries its spread and its CI. Runs are few
and their variance is estimated, so intervals use Student's t; two sets of runs are compared
with Welch's t-test (unequal variances), whose p-value and interval come from the same test,
so a verdict can never say "unchanged" while its interval excludes zero. With fewer than two
runs no interval exists, and none is given.
"""
from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats as _scipy_stats

CONFIDENCE = 0.95
ALPHA = 0.05          # two-sided significance level, 1 - CONFIDENCE
MIN_RUNS = 2          # fewer runs than this: no spread, no interval, no p-value


@dataclass(frozen=True)
class Summary:
    """Distribution of one quantity over runs; ``std`` and the interval are None below two runs."""

    n: int
    mean: float | None
    std: float | None
    ci95_low: float | None
    ci95_high: float | None
    median: float | None
    min: float | None
    max: float | None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def has_interval(self) -> bool:
        return self.ci95_low is not None and self.ci95_high is not None


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample std, 95% Student-t CI of the mean, median, min and max (all None for no values)."""
    vals = [float(v) for v in values]
    if not vals:
        return Summary(0, None, None, None, None, None, None, None)
    mean = math.fsum(vals) / len(vals)
    std = low = high = None
    if len(vals) >= MIN_RUNS:
        std = statistics.stdev(vals)
        if std == 0:
            low = high = mean
        else:
            interval = _scipy_stats.ttest_1samp(vals, 0.0).confidence_interval(CONFIDENCE)
            low, high = float(interval.low), float(interval.high)
    return Summary(n=len(vals), mean=mean, std=std, ci95_low=low, ci95_high=high,
                   median=statistics.median(vals), min=min(vals), max=max(vals))


@dataclass(frozen=True)
class Difference:
    """``B - A`` for one quantity by Welch's t-test; statistics are None when a side has < 2 values."""

    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    ci95_low: float | None
    ci95_high: float | None
    df: float | None
    p_value: float | None

    @property
    def testable(self) -> bool:
        return self.p_value is not None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """Difference of means ``b - a``: Welch's CI, df and p-value, all from one ``scipy.stats.ttest_ind``."""
    na, nb = len(a), len(b)
    mean_a = math.fsum(a) / na if na else None
    mean_b = math.fsum(b) / nb if nb else None
    diff = mean_b - mean_a if mean_a is not None and mean_b is not None else None
    if na < MIN_RUNS or nb < MIN_RUNS or diff is None:
        return Difference(na, nb, mean_a, mean_b, diff, None, None, None, None)
    if statistics.variance(a) == 0 and statistics.variance(b) == 0:
        # No spread on either side: the test is undefined, and a zero-width CI would overclaim.
        return Difference(na, nb, mean_a, mean_b, diff, None, None, None, None)
    with warnings.catch_warnings():   # nearly equal values: scipy warns about precision, the numbers stand
        warnings.simplefilter("ignore", RuntimeWarning)
        result = _scipy_stats.ttest_ind(b, a, equal_var=False)
        interval = result.confidence_interval(CONFIDENCE)
    return Difference(na, nb, mean_a, mean_b, diff, float(interval.low), float(interval.high), float(result.df),
                      float(result.pvalue))


@dataclass(frozen=True)
class RelativeChange:
    """``mean_B / mean_A - 1`` (fractions: -0.12 is 12% less), with the same test's interval and p-value."""

    change: float
    ci95_low: float
    ci95_high: float
    df: float
    p_value: float


def relative_change(a: Sequence[float], b: Sequence[float]) -> RelativeChange | None:
    """B's change relative to baseline A: the Welch difference of means over A's mean.

    A is the reference, so its mean is the unit: the interval is Welch's interval of
    ``mean_B - mean_A`` divided by ``mean_A``, and the p-value is that test's, so the relative
    change is significant exactly when the difference is. None when the difference has no test
    (fewer than 2 values a side, no spread at all) or ``mean_A`` is not positive.
    """
    d = welch_difference(a, b)
    if d.p_value is None or d.mean_a is None or d.mean_a <= 0 or d.diff is None:
        return None
    assert d.ci95_low is not None and d.ci95_high is not None and d.df is not None
    return RelativeChange(d.diff / d.mean_a, d.ci95_low / d.mean_a, d.ci95_high / d.mean_a, d.df, d.p_value)
