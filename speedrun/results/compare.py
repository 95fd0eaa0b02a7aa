"""Compare two records: is B faster than A, and did accuracy change, beyond run-to-run noise?

Both questions are answered from the runs' raw values with Welch's unequal-variance t-test
(:mod:`speedrun.results.stats`), because two recipes rarely have the same spread: the difference
of means ``B - A``, its 95% CI and its two-sided p-value all come from one
``scipy.stats.ttest_ind(equal_var=False)``, and the relative time change ``mean_B / mean_A - 1``
is that difference over A's mean (A is the baseline), with the same test's interval over A's
mean and the same p-value. So the verdict, the p-value and both intervals always agree: a
change is called significant exactly when its interval excludes zero.

Accuracy uses every run's ``final_test_acc``; time uses the runs that reached the record's own
target (so A and B should share a target, which the verdict checks). A side with fewer than two
values has no variance estimate: the verdict says the comparison has too few runs instead of
inventing a p-value. Wording rules (significance at p < 0.05):

* time: "B is faster by X% ± H%, p = P" / "B is slower by ..." / "time-to-target unchanged, p = P";
* accuracy: "accuracy higher by X ± H points, p = P" / "lower ..." / "accuracy unchanged, p = P"
  ("unchanged" means no significant difference at this sample size, not proven equality);
* warnings are appended when A and B ran on different GPUs, different dataset copies, or toward
  different targets, because then the difference is not the recipe's alone.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from speedrun.errors import RecordError
from speedrun.results.records import completeness_note
from speedrun.results.run_values import (
    gpu_label,
    run_accuracies,
    run_times_to_target,
    schedule_label,
    times_taken_concurrently,
)
from speedrun.results.stats import (
    ALPHA,
    MIN_RUNS,
    Difference,
    RelativeChange,
    relative_change,
    welch_difference,
)
from speedrun.settings import check, setting

COMPARE_FORMATS = ("text", "json")


@dataclass(frozen=True)
class CompareOptions:
    """How ``speedrun compare`` prints."""

    format: str = setting("text", "output format", choices=COMPARE_FORMATS)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Comparison:
    """Everything ``speedrun compare`` reports; ``verdict`` is the plain-words summary."""

    a_label: str
    b_label: str
    accuracy: Difference
    time_to_target: Difference
    relative_time: RelativeChange | None
    warnings: tuple[str, ...]
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    def to_text(self) -> str:
        """Human report: the verdict first, then the numbers behind it."""
        lines = [self.verdict, "", f"A: {self.a_label}", f"B: {self.b_label}"]
        lines.append(_describe("accuracy", self.accuracy, lambda x: f"{100 * x:.2f}%", lambda x: f"{100 * x:+.2f} pts"))
        lines.append(_describe("time-to-target", self.time_to_target, lambda x: f"{x:.3f} s", lambda x: f"{x:+.3f} s"))
        if self.relative_time is not None:
            r = self.relative_time
            lines.append(f"  relative time change B/A - 1: {100 * r.change:+.1f}% "
                         f"(95% CI {100 * r.ci95_low:+.1f}% .. {100 * r.ci95_high:+.1f}%, relative to A's mean)")
        return "\n".join(lines) + "\n"


def compare_records(a: dict, b: dict) -> Comparison:
    """Compare record ``b`` against baseline ``a`` (both validated records with top-level runs)."""
    for name, record in (("A", a), ("B", b)):
        if record.get("kind") == "anchor" and record.get("sides"):
            raise RecordError(
                f"record {name} ({_label(record)}) is an anchor record with sides; compare takes "
                "records whose runs are at the top level (e.g. two 'speedrun train' records)"
            )
    accuracy = welch_difference(run_accuracies(a["runs"]), run_accuracies(b["runs"]))
    times_a = run_times_to_target(a["runs"], float(a["target"]), float(a["target"]))
    times_b = run_times_to_target(b["runs"], float(b["target"]), float(b["target"]))
    time = welch_difference(times_a, times_b)
    rel = relative_change(times_a, times_b)
    warnings = tuple(comparability_warnings(a, b))
    verdict = write_verdict(accuracy, time, rel, warnings)
    return Comparison(_label(a), _label(b), accuracy, time, rel, warnings, verdict)


def comparability_warnings(a: dict, b: dict) -> list[str]:
    """Reasons a difference between A and B may not be the recipe's doing."""
    out = []
    gpu_a, gpu_b = gpu_label(a), gpu_label(b)
    if gpu_a != gpu_b:
        out.append(f"A ran on {gpu_a} and B on {gpu_b}, so their times are not comparable")
    out += _dataset_differences(a.get("dataset") or {}, b.get("dataset") or {})
    if not math.isclose(float(a["target"]), float(b["target"]), abs_tol=1e-12):
        out.append(f"A's target is {100 * a['target']:.2f}% and B's {100 * b['target']:.2f}%, so times measure different goals")
    shared = [name for name, record in (("A", a), ("B", b)) if times_taken_concurrently(record)]
    if shared:
        whose = "both sides'" if len(shared) == 2 else f"{shared[0]}'s"
        out.append(f"{whose} times were taken side by side with other runs (a sweep on CPUs), "
                   f"so they measure the sharing as much as the recipe")
    for name, record in (("A", a), ("B", b)):
        note = completeness_note(record)
        if note:
            out.append(f"{name} is an {note}, so it holds only the runs it finished")
    return out


def format_p(p: float) -> str:
    """Two significant digits, never rounding across the 0.05 line; "< 0.001" for tiny ones."""
    if p < 0.001:
        return "< 0.001"
    text = f"{p:.2g}"
    if (float(text) < ALPHA) != (p < ALPHA):
        text = f"{p:.3g}"
    return f"= {text}"


def write_verdict(accuracy: Difference, time: Difference, rel: RelativeChange | None,
                  warnings: Sequence[str] = ()) -> str:
    """The plain-words summary, by the wording rules in the module docstring."""
    parts = [_time_words(time, rel), _accuracy_words(accuracy)]
    text = "; ".join(parts)
    if warnings:
        text += ". Warning: " + "; ".join(warnings)
    return text


def _time_words(time: Difference, rel: RelativeChange | None) -> str:
    if time.n_a < MIN_RUNS or time.n_b < MIN_RUNS:
        return (
            f"too few runs to compare time-to-target (A {time.n_a}, B {time.n_b} reached the target; "
            f"need {MIN_RUNS} each)"
        )
    if time.p_value is None:
        return "time-to-target: no run-to-run spread on either side, so no p-value"
    p = format_p(time.p_value)
    if not time.significant or rel is None:
        return f"time-to-target unchanged, p {p}"
    half = (rel.ci95_high - rel.ci95_low) / 2
    direction = "faster" if rel.change < 0 else "slower"
    return f"B is {direction} by {100 * abs(rel.change):.1f}% ± {100 * half:.1f}%, p {p}"


def _accuracy_words(acc: Difference) -> str:
    if acc.n_a < MIN_RUNS or acc.n_b < MIN_RUNS:
        return f"too few runs to compare accuracy (A {acc.n_a}, B {acc.n_b} finished; need {MIN_RUNS} each)"
    if acc.p_value is None:
        same = "identical" if acc.diff == 0 else "different"
        return f"accuracy {same} with no run-to-run spread, so no p-value"
    p = format_p(acc.p_value)
    if not acc.significant or acc.diff is None or acc.ci95_low is None or acc.ci95_high is None:
        return f"accuracy unchanged, p {p}"
    half = (acc.ci95_high - acc.ci95_low) / 2
    direction = "higher" if acc.diff > 0 else "lower"
    return f"accuracy {direction} by {100 * abs(acc.diff):.2f} ± {100 * half:.2f} points, p {p}"


def _describe(name: str, d: Difference, fmt: Callable[[float], str], fmt_diff: Callable[[float], str]) -> str:
    mean_a = fmt(d.mean_a) if d.mean_a is not None else "-"
    mean_b = fmt(d.mean_b) if d.mean_b is not None else "-"
    line = f"  {name}: A {mean_a} (n={d.n_a}), B {mean_b} (n={d.n_b})"
    if d.diff is not None:
        line += f", B - A {fmt_diff(d.diff)}"
    if d.ci95_low is not None and d.ci95_high is not None and d.p_value is not None:
        line += f" (95% CI {fmt_diff(d.ci95_low)} .. {fmt_diff(d.ci95_high)}, Welch df {d.df:.1f}, p {format_p(d.p_value)})"
    return line


def _label(record: dict) -> str:
    source = record.get("source_file")
    base = (f"{record.get('recipe', '?')}, {schedule_label(record)} "
            f"({record.get('created', '?')[:19]}, {gpu_label(record)})")
    return f"{base} {source}" if source else base


def _dataset_differences(a: dict, b: dict) -> list[str]:
    """What differs between the data A and B trained and were tested on, in words: the copy
    (its name or where it was read), or only how many images of it (subsets)."""
    out = []
    if (a.get("name"), a.get("origin")) != (b.get("name"), b.get("origin")):
        out.append(f"A and B used different dataset copies ({a.get('name')} from {a.get('origin')} vs "
                   f"{b.get('name')} from {b.get('origin')})")
    for key, what in (("train_size", "trained on"), ("test_size", "were tested on")):
        if a.get(key) != b.get(key):
            out.append(f"A and B {what} different numbers of images ({a.get(key)} vs {b.get(key)}: "
                       f"--{key.replace('_size', '-subset')})")
    return out
