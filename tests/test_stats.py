import math

import numpy as np
import pytest
from scipy import stats

from speedrun.results.stats import mean_confidence_interval, summarize


def test_interval_matches_scipy_t_interval():
    values = [0.9391, 0.9402, 0.9388, 0.9415, 0.9399, 0.9407]
    low, high = mean_confidence_interval(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(ref, rel=1e-12)


def test_summary_fields():
    s = summarize([3.0, 1.0, 2.0, 4.0])
    assert (s.n, s.mean, s.median, s.min, s.max) == (4, 2.5, 2.5, 1.0, 4.0)
    assert s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert s.ci95_low < s.mean < s.ci95_high
    assert all(isinstance(v, (int, float)) for v in s.to_dict().values())


def test_single_value_has_degenerate_interval_and_empty_is_none():
    s = summarize([0.5])
    assert (s.ci95_low, s.ci95_high, s.std) == (0.5, 0.5, 0.0)
    assert summarize([]).mean is None and summarize([]).n == 0


def test_interval_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few, many = rng.normal(0.94, 0.002, 5), rng.normal(0.94, 0.002, 100)
    lo5, hi5 = mean_confidence_interval(list(few))
    lo100, hi100 = mean_confidence_interval(list(many))
    assert hi100 - lo100 < hi5 - lo5
