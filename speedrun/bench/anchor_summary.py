"""The anchor record's statistics: ratios of mean times and the accuracy difference (both by
Welch's t-test, :mod:`speedrun.results.stats`), and the headline that says what the comparison
shows in one breath."""
from __future__ import annotations

import math
from collections.abc import Sequence

from speedrun.results.run_values import finished_runs, reached_runs, run_accuracies
from speedrun.results.stats import relative_change, welch_difference


def _ratio(ours: list[float], theirs: list[float], metric: str) -> dict:
    """Ours / anchor for the mean of ``metric``, with Welch's CI over the anchor's mean (None without a test)."""
    change = relative_change(theirs, ours)
    base = {"metric": metric, "n_ours": len(ours), "n_anchor": len(theirs),
            "mean_ours": math.fsum(ours) / len(ours) if ours else None,
            "mean_anchor": math.fsum(theirs) / len(theirs) if theirs else None,
            "method": "1 + Welch difference of means over the anchor's mean, its CI likewise "
                      "(speedrun.results.stats.relative_change)"}
    if change is None:
        return {**base, "ratio": None, "ci95_low": None, "ci95_high": None, "df": None, "p_value": None}
    return {**base, "ratio": 1 + change.change, "ci95_low": 1 + change.ci95_low, "ci95_high": 1 + change.ci95_high,
            "df": change.df, "p_value": change.p_value}


def anchor_summary(ours_runs: Sequence[dict], anchor_runs: Sequence[dict], ours_label: str,
                   anchor_label: str, *, target: float) -> dict:
    """Both distributions compared, from the runs' raw values (see the module docstring).

    ``headline`` is what the comparison says in one breath: the ratio of mean run times at
    matched budgets (every completed run counts, none is dropped for missing the target), the
    accuracy difference with its Welch p-value, and the time-to-target ratio at ``target`` when
    both sides' mean accuracy reaches it (otherwise the reason it is not comparable).
    """
    def reached_times(runs: Sequence[dict]) -> list[float]:
        return [float(r["time_to_target_s"]) for r in reached_runs(runs)]

    acc_ours, acc_anchor = run_accuracies(ours_runs), run_accuracies(anchor_runs)
    accuracy = welch_difference(acc_anchor, acc_ours)
    run_time = _ratio([float(r["call_s"]) for r in finished_runs(ours_runs)],
                      [float(r["call_s"]) for r in finished_runs(anchor_runs)], "call_s")
    time_to_target = _ratio(reached_times(ours_runs), reached_times(anchor_runs), "time_to_target_s")
    accuracy_difference = {"ours_minus_anchor": accuracy.diff, "ci95_low": accuracy.ci95_low,
                           "ci95_high": accuracy.ci95_high, "p_value": accuracy.p_value,
                           "method": "Welch t (speedrun.results.stats.welch_difference)"}
    return {
        "runs": len(ours_runs) + len(anchor_runs),
        "completed": len(finished_runs(ours_runs)) + len(finished_runs(anchor_runs)),
        "reached": len(reached_times(ours_runs)) + len(reached_times(anchor_runs)),
        "ours": ours_label,
        "anchor": anchor_label,
        "time_to_target_ratio": time_to_target,
        "run_time_ratio": run_time,
        "accuracy_difference": accuracy_difference,
        "headline": _headline(acc_ours, acc_anchor, run_time, time_to_target, accuracy_difference,
                              ours_label, anchor_label, target),
    }


def _headline(acc_ours: list[float], acc_anchor: list[float], run_time: dict, time_to_target: dict,
              accuracy: dict, ours_label: str, anchor_label: str, target: float) -> dict:
    means = {ours_label: _mean(acc_ours), anchor_label: _mean(acc_anchor)}
    short = [f"{label} (mean {100 * m:.2f}%)" if m is not None else f"{label} (no finished run)"
             for label, m in means.items() if m is None or m < target]
    both_reach = not short
    parts = []
    if run_time["ratio"] is not None:
        parts.append(f"run time at matched budgets: {ours_label} / {anchor_label} = {run_time['ratio']:.3f} "
                     f"(95% CI {run_time['ci95_low']:.3f}..{run_time['ci95_high']:.3f})")
    else:
        parts.append(f"run time ratio: needs 2 finished runs a side ({run_time['n_ours']} vs {run_time['n_anchor']})")
    if accuracy["ours_minus_anchor"] is not None:
        p = accuracy["p_value"]
        parts.append(f"accuracy difference {100 * accuracy['ours_minus_anchor']:+.2f} points"
                     + (f" (Welch p = {p:.3g})" if p is not None else " (too few runs for a p-value)"))
    if not both_reach:
        parts.append(f"time-to-target at {100 * target:.2f}% not comparable: below it " + ", ".join(short))
    elif time_to_target["ratio"] is not None:
        parts.append(f"time-to-target at {100 * target:.2f}%: ratio {time_to_target['ratio']:.3f} "
                     f"(95% CI {time_to_target['ci95_low']:.3f}..{time_to_target['ci95_high']:.3f}, "
                     f"{time_to_target['n_ours']} vs {time_to_target['n_anchor']} runs that reached it)")
    return {"target": target, "both_reach": both_reach, "run_time_ratio": run_time["ratio"],
            "accuracy_difference": accuracy["ours_minus_anchor"], "accuracy_p_value": accuracy["p_value"],
            "time_to_target_ratio": time_to_target["ratio"] if both_reach else None, "text": "; ".join(parts)}


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def format_anchor_summary(summary: dict, sides: Sequence[dict], target: float) -> list[str]:
    """Plain lines for the terminal: each side's accuracy and time, then the headline."""
    lines = []
    for side in sides:
        s = side["summary"]
        acc, ttt = s["accuracy"], s["time_to_target"]
        acc_text = (f"{acc['mean']:.4f} (95% CI {acc['ci95_low']:.4f}..{acc['ci95_high']:.4f})" if acc["n"] > 1
                    else f"{acc['mean']:.4f} (one run: no interval)" if acc["n"] else "-")
        ttt_text = (f"{ttt['mean']:.2f}s (95% CI {ttt['ci95_low']:.2f}..{ttt['ci95_high']:.2f})" if ttt["n"] > 1
                    else f"{ttt['mean']:.2f}s (one run)" if ttt["n"] else "-")
        lines.append(f"{side['label']}: accuracy {acc_text}; reached {target:.4f} in {s['reached']}/{s['runs']}; "
                     f"time to target {ttt_text}")
    lines.append(summary["headline"]["text"])
    return lines
