"""Values read from a record's raw runs, one rule each, shared by the leaderboard, compare and plots.

Numbers are recomputed from the runs (``final_test_acc``, ``time_to_target_s``, the epoch
curves) rather than copied from a record's summary, so a table is the evidence, not a claim
about it. A *finished* run is one with status ``ok`` and a final accuracy; a run *reached* the
target when it has a time-to-target.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what a numeric record field must hold."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finished_runs(runs: Sequence[dict]) -> list[dict]:
    """The runs that finished: status ``ok`` and a final test accuracy."""
    return [r for r in runs if r.get("status") == "ok" and is_number(r.get("final_test_acc"))]


def reached_runs(runs: Sequence[dict]) -> list[dict]:
    """The finished runs that reached their record's target, with the time it took."""
    return [r for r in finished_runs(runs) if r.get("reached_target") and is_number(r.get("time_to_target_s"))]


_EXTENSION_LABELS = {"SWAConfig": "SWA", "SnapshotEnsembleConfig": "snapshot ensemble", "PlateauConfig": "plateau"}


def schedule_label(record: dict) -> str:
    """The record's lr policy, plus the extensions its command added to the recipe (e.g. SWA).

    Runs of one recipe under different policies are otherwise indistinguishable in the table.
    """
    name = str((record.get("schedule") or {}).get("name") or "?")
    extensions = ((record.get("config") or {}).get("recipe") or {}).get("extensions") or []
    added = [_EXTENSION_LABELS[e["type"]] for e in extensions
             if isinstance(e, dict) and e.get("type") in _EXTENSION_LABELS]
    return " + ".join([name, *added])


def times_taken_concurrently(record: dict) -> bool:
    """Whether the record's times were taken beside other runs on the same machine (a sweep on
    CPUs): such times measure the sharing as much as the recipe, so they rank nothing."""
    sweep = record.get("sweep")
    return isinstance(sweep, dict) and sweep.get("concurrent_times") is True


def gpu_label(record: dict) -> str:
    """The GPU model a record's times belong to; "CPU" for CPU runs."""
    env = record.get("environment", {})
    device = str(env.get("device") or "")
    if device.lower().startswith("cpu"):
        return "CPU"
    return env.get("gpu_name") or f"unknown GPU ({device or 'no device recorded'})"


def run_accuracies(runs: Sequence[dict]) -> list[float]:
    """Final test accuracy of every finished run."""
    return [float(r["final_test_acc"]) for r in finished_runs(runs)]


def run_time_to_target(run: dict, target: float, record_target: float) -> float | None:
    """Seconds until ``run`` reached ``target``, or None if it never did.

    At the record's own target this is the harness's ``time_to_target_s``; at another target it
    is the ``elapsed_s`` of the first epoch whose ``test_acc`` meets it (evaluation granularity).
    """
    if run not in finished_runs([run]):
        return None
    if math.isclose(target, record_target, rel_tol=0, abs_tol=1e-12):
        return float(run["time_to_target_s"]) if run in reached_runs([run]) else None
    for epoch in run.get("epochs", []):
        acc = epoch.get("test_acc")
        if is_number(acc) and acc >= target:
            return float(epoch["elapsed_s"])
    return None


def run_times_to_target(runs: Sequence[dict], target: float, record_target: float) -> list[float]:
    """Time-to-target of every run that reached ``target``."""
    times = (run_time_to_target(r, target, record_target) for r in runs)
    return [t for t in times if t is not None]
