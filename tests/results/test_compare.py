"""compare: Welch statistics checked against scipy on real runs, and the verdict's wording rules.

Records are real CPU runs from the harness (``records_fixture``). The "twice as fast" record
is a real record with every time multiplied by 0.5, which fixes the relative change at exactly
-50% while keeping the runs' real spread; other variants change only the field a warning is
about. The wording rules themselves are checked on explicit statistics (``write_verdict``),
because whether a real CPU time difference is significant depends on the machine's noise.
"""
from __future__ import annotations

import argparse
import json

import pytest
from scipy import stats

from speedrun.cli import command
from speedrun.cli import compare as compare_cmd
from speedrun.errors import RecordError
from speedrun.results.compare import compare_records, format_p, write_verdict
from speedrun.results.records import write_record
from speedrun.results.stats import Difference, RelativeChange
from tests.support.records import TARGET, scale_times


def _accs(record):
    return [r["final_test_acc"] for r in record["runs"] if r["final_test_acc"] is not None]


def _times(record):
    return [r["time_to_target_s"] for r in record["runs"] if r["reached_target"]]


def test_differences_match_scipy_welch_on_the_raw_values(cpu_records):
    a, b = cpu_records.load("narrow"), cpu_records.load("wide")
    comparison = compare_records(a, b)
    for diff, xa, xb in ((comparison.accuracy, _accs(a), _accs(b)), (comparison.time_to_target, _times(a), _times(b))):
        if len(xa) < 2 or len(xb) < 2 or (stats.tvar(xa) == 0 and stats.tvar(xb) == 0):
            continue  # covered by the too-few-runs / no-spread tests
        scipy_result = stats.ttest_ind(xb, xa, equal_var=False)
        assert diff.diff == pytest.approx(sum(xb) / len(xb) - sum(xa) / len(xa))
        assert diff.p_value == pytest.approx(float(scipy_result.pvalue))
        ci = scipy_result.confidence_interval(0.95)
        assert (diff.ci95_low, diff.ci95_high) == pytest.approx((float(ci.low), float(ci.high)))
        assert diff.df == pytest.approx(float(scipy_result.df))


def test_relative_time_change_is_the_welch_difference_over_the_baseline_mean(cpu_records):
    a = cpu_records.load("narrow")
    b = scale_times(a, 0.5)
    comparison = compare_records(a, b)
    rel, time = comparison.relative_time, comparison.time_to_target
    assert rel.change == pytest.approx(-0.5)
    xa = _times(a)
    mean_a = sum(xa) / len(xa)
    assert (rel.ci95_low, rel.ci95_high) == pytest.approx((time.ci95_low / mean_a, time.ci95_high / mean_a))
    assert rel.p_value == time.p_value


# --- verdict wording -------------------------------------------------------------------------


def _diff(n_a, n_b, diff, half, p):
    return Difference(n_a, n_b, 1.0, 1.0 + diff, diff, diff - half, diff + half, 10.0, p)


def test_verdict_wording_for_a_significant_speedup_and_unchanged_accuracy():
    time = _diff(5, 5, -0.6, 0.15, 0.002)
    rel = RelativeChange(-0.12, -0.15, -0.09, 8.0, 0.002)
    accuracy = _diff(5, 5, 0.001, 0.003, 0.41)
    assert write_verdict(accuracy, time, rel) == "B is faster by 12.0% ± 3.0%, p = 0.002; accuracy unchanged, p = 0.41"


def test_verdict_wording_for_slower_and_an_accuracy_change():
    time = _diff(4, 4, 0.5, 0.2, 0.0004)
    rel = RelativeChange(0.25, 0.15, 0.35, 6.0, 0.001)
    lower = _diff(4, 4, -0.0042, 0.002, 0.01)
    assert write_verdict(lower, time, rel) == (
        "B is slower by 25.0% ± 10.0%, p < 0.001; accuracy lower by 0.42 ± 0.20 points, p = 0.01")
    higher = _diff(4, 4, 0.0042, 0.002, 0.01)
    assert write_verdict(higher, time, rel).endswith("accuracy higher by 0.42 ± 0.20 points, p = 0.01")


def test_verdict_wording_when_time_is_not_significant():
    time = _diff(4, 4, -0.1, 0.3, 0.3)
    rel = RelativeChange(-0.02, -0.08, 0.04, 6.0, 0.4)
    assert write_verdict(_diff(4, 4, 0.0, 0.01, 1.0), time, rel) == (
        "time-to-target unchanged, p = 0.3; accuracy unchanged, p = 1")


def test_verdict_appends_warnings():
    time, accuracy = _diff(4, 4, 0.0, 1.0, 0.9), _diff(4, 4, 0.0, 1.0, 0.9)
    text = write_verdict(accuracy, time, None, ["A ran on X and B on Y, so their times are not comparable"])
    assert text.endswith(". Warning: A ran on X and B on Y, so their times are not comparable")


def test_a_rescaled_copy_is_called_faster_or_unchanged_by_its_p_value(cpu_records):
    # Real runs, every time halved: the change is exactly -50%; whether it is significant
    # depends on the runs' real (CPU, shared machine) spread, so the wording must follow p.
    a = cpu_records.load("narrow")
    comparison = compare_records(a, scale_times(a, 0.5))
    first = comparison.verdict.split(";")[0]
    if comparison.time_to_target.significant:
        assert first.startswith("B is faster by 50.0% ± ")
    else:
        assert first.startswith("time-to-target unchanged, p = ")
    assert "accuracy unchanged, p = 1" in comparison.verdict or "no run-to-run spread" in comparison.verdict
    assert "Warning" not in comparison.verdict


def test_a_record_against_itself_is_unchanged(cpu_records):
    a = cpu_records.load("narrow")
    assert compare_records(a, a).verdict.startswith("time-to-target unchanged, p = 1;")


def test_the_verdict_direction_follows_the_sign_and_significance(cpu_records):
    a, b = cpu_records.load("narrow"), cpu_records.load("wide")
    comparison = compare_records(a, b)
    first = comparison.verdict.split(";")[0]
    if not comparison.time_to_target.testable:
        assert first.startswith("too few runs") or "no run-to-run spread" in first
    elif comparison.time_to_target.significant:
        word = "faster" if comparison.time_to_target.diff < 0 else "slower"
        assert first.startswith(f"B is {word} by ")
    else:
        assert first.startswith("time-to-target unchanged, p = ")


def test_fewer_than_two_runs_says_too_few_instead_of_a_p_value(cpu_records):
    comparison = compare_records(cpu_records.load("single"), cpu_records.load("narrow"))
    assert comparison.time_to_target.p_value is None and comparison.accuracy.p_value is None
    assert comparison.relative_time is None
    assert "too few runs to compare time-to-target" in comparison.verdict
    assert "too few runs to compare accuracy (A 1, B 3 finished; need 2 each)" in comparison.verdict
    assert "p =" not in comparison.verdict


def test_different_gpus_dataset_copies_and_targets_are_warned_about(cpu_records, tmp_path):
    a = cpu_records.load("narrow")
    other_gpu = dict(a, environment={**a["environment"], "device": "cuda", "gpu_name": "Simulated GPU B"})
    assert "A ran on CPU and B on Simulated GPU B" in compare_records(a, other_gpu).verdict
    other_data = dict(a, dataset={**a["dataset"], "origin": "/elsewhere/cifar10"})
    assert "different dataset copies" in compare_records(a, other_data).verdict
    subset = dict(a, dataset={**a["dataset"], "test_size": a["dataset"]["test_size"] // 2})
    verdict = compare_records(a, subset).verdict
    assert "different dataset copies" not in verdict, "only the subset differs: the copy is the same"
    assert f"A and B were tested on different numbers of images ({a['dataset']['test_size']} vs " \
           f"{a['dataset']['test_size'] // 2}: --test-subset)" in verdict
    other_target = dict(a, target=0.25)
    assert f"A's target is {100 * TARGET:.2f}% and B's 25.00%" in compare_records(a, other_target).verdict


def test_p_values_are_shown_without_crossing_the_significance_line():
    assert format_p(0.0004) == "< 0.001"
    assert format_p(0.002) == "= 0.002"
    assert format_p(0.41) == "= 0.41"
    assert format_p(0.0499) == "= 0.0499"
    assert format_p(0.051) == "= 0.051"


def test_an_anchor_record_with_sides_is_refused_with_the_reason(cpu_records):
    a = cpu_records.load("narrow")
    anchor = dict(a, kind="anchor", sides=[{"label": "x", "runs": a["runs"], "summary": a["summary"]}])
    with pytest.raises(RecordError, match="is an anchor record with sides"):
        compare_records(a, anchor)


# --- command ---------------------------------------------------------------------------------


def _parse(argv):
    parser = argparse.ArgumentParser(prog="speedrun")
    compare_cmd.register(parser.add_subparsers(dest="command"), command("compare"))
    return parser.parse_args(argv)


def test_command_prints_the_verdict_then_the_numbers(cpu_records, tmp_path, capsys):
    fast = write_record(scale_times(cpu_records.load("narrow"), 0.5), tmp_path / "fast.json")
    assert compare_cmd.run(_parse(["compare", str(cpu_records.narrow), str(fast)])) == 0
    out = capsys.readouterr().out
    assert out.startswith(("B is faster by 50.0%", "time-to-target unchanged"))
    assert "relative time change B/A - 1: -50.0%" in out and str(fast) in out


def test_command_json_is_parseable_and_complete(cpu_records, capsys):
    args = _parse(["compare", str(cpu_records.narrow), str(cpu_records.wide), "--format", "json"])
    assert compare_cmd.run(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"accuracy", "time_to_target", "relative_time", "warnings", "verdict"}
    assert doc["accuracy"]["n_a"] == 3 and doc["time_to_target"]["mean_a"] > 0


def test_command_names_a_missing_record(tmp_path, cpu_records):
    with pytest.raises(RecordError, match="no such record file"):
        compare_cmd.run(_parse(["compare", str(tmp_path / "nope.json"), str(cpu_records.narrow)]))


def test_cli_exits_2_naming_a_malformed_record(cpu_records, tmp_path, capsys):
    from speedrun.cli import main

    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    assert main(["compare", str(cpu_records.narrow), str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.json" in err and "was it cut short" in err


def test_an_incomplete_record_is_compared_with_a_warning(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    cut = dict(record, complete=False, runs_planned=5)
    cut.pop("source_file", None)
    comparison = compare_records(cpu_records.load("wide"), cut)
    assert "B is an incomplete record: 3 of 5 planned runs (cut short), so it holds only the runs it finished" \
        in comparison.warnings
    assert "3 of 5 planned runs (cut short)" in comparison.verdict


@pytest.mark.parametrize("shared, says", [("A", "A's times were taken side by side"),
                                          ("AB", "both sides' times were taken side by side")])
def test_times_taken_side_by_side_are_warned_of_once(cpu_records, shared, says):
    a, b = cpu_records.load("wide"), cpu_records.load("narrow")
    a, b = ({**r, "sweep": {"name": "s", "concurrent_times": True}} if side in shared else r for side, r in (("A", a), ("B", b)))
    warnings = [w for w in compare_records(a, b).warnings if "side by side" in w]
    assert len(warnings) == 1 and warnings[0].startswith(says), warnings
