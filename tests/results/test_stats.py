"""Summaries and comparisons of seeded runs: scipy's Student-t and Welch statistics, one method each."""
import numpy as np
import pytest
from scipy import stats

from speedrun.results.stats import relative_change, summarize, welch_difference


def test_interval_matches_scipy_t_interval():
    values = [0.9391, 0.9402, 0.9388, 0.9415, 0.9399, 0.9407]
    s = summarize(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (s.ci95_low, s.ci95_high) == pytest.approx(ref, rel=1e-12)


def test_summary_fields():
    s = summarize([3.0, 1.0, 2.0, 4.0])
    assert (s.n, s.mean, s.median, s.min, s.max) == (4, 2.5, 2.5, 1.0, 4.0)
    assert s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert s.ci95_low < s.mean < s.ci95_high
    assert all(isinstance(v, (int, float)) for v in s.to_dict().values())


def test_one_value_has_no_spread_and_no_interval_and_empty_is_none():
    s = summarize([0.5])
    assert (s.n, s.mean, s.std, s.ci95_low, s.ci95_high) == (1, 0.5, None, None, None)
    assert not s.has_interval
    assert summarize([]).mean is None and summarize([]).n == 0


def test_identical_values_have_a_zero_width_interval():
    s = summarize([0.5, 0.5, 0.5])
    assert (s.std, s.ci95_low, s.ci95_high) == (0.0, 0.5, 0.5)


def test_interval_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few, many = summarize(list(rng.normal(0.94, 0.002, 5))), summarize(list(rng.normal(0.94, 0.002, 100)))
    assert many.ci95_high - many.ci95_low < few.ci95_high - few.ci95_low


def test_welch_difference_is_scipys_test_and_interval():
    a, b = [10.0, 10.4, 9.8, 10.1], [8.1, 7.9, 8.3, 9.9, 7.2]
    d = welch_difference(a, b)
    reference = stats.ttest_ind(b, a, equal_var=False)
    ci = reference.confidence_interval(0.95)
    assert d.p_value == pytest.approx(reference.pvalue) and d.df == pytest.approx(reference.df)
    assert (d.ci95_low, d.ci95_high) == pytest.approx((ci.low, ci.high))
    assert d.diff == pytest.approx(np.mean(b) - np.mean(a))


@pytest.mark.parametrize("seed", range(40))
def test_the_relative_change_is_significant_exactly_when_its_interval_excludes_zero(seed):
    rng = np.random.default_rng(seed)
    a = list(rng.normal(10, 1.5, rng.integers(2, 8)))
    b = list(rng.normal(10 + rng.normal(0, 1.5), 1.5, rng.integers(2, 8)))
    d, rel = welch_difference(a, b), relative_change(a, b)
    assert rel.p_value == d.p_value
    excludes_zero = rel.ci95_low > 0 or rel.ci95_high < 0
    assert excludes_zero == (d.ci95_low > 0 or d.ci95_high < 0) == (d.p_value < 0.05)
    assert rel.change == pytest.approx(d.diff / np.mean(a))


def test_no_test_without_two_values_a_side_or_without_any_spread():
    assert welch_difference([1.0], [1.0, 2.0]).p_value is None
    flat = welch_difference([1.0, 1.0], [2.0, 2.0])
    assert flat.p_value is None and flat.ci95_low is None and flat.diff == 1.0
    assert relative_change([1.0, 1.0], [2.0, 2.0]) is None
