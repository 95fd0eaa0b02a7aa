"""Summary statistics for seeded runs.

A claim of "94%" is a mean over seeded runs with its confidence interval, and a time is a
distribution, not a best case, so every summary here carries its spread and its CI.
Confidence intervals use Student's t (runs are few, and their variance is estimated).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class Summary:
    """Distribution of one quantity over runs."""

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


def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t interval for the mean; degenerate (mean, mean) for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_confidence_interval needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return (mean, mean)
    t_crit = float(_scipy_stats.t.ppf(0.5 + confidence / 2, n - 1))
    half = t_crit * sample_std(values) / math.sqrt(n)
    return (mean - half, mean + half)


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (n-1 in the denominator); 0 for a single value."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(values: Sequence[float]) -> Summary:
    """Mean, std, 95% CI, median, min and max; all None when there are no values."""
    vals = [float(v) for v in values]
    if not vals:
        return Summary(0, None, None, None, None, None, None, None)
    low, high = mean_confidence_interval(vals)
    ordered = sorted(vals)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return Summary(
        n=len(vals), mean=math.fsum(vals) / len(vals), std=sample_std(vals),
        ci95_low=low, ci95_high=high, median=median, min=ordered[0], max=ordered[-1],
    )
