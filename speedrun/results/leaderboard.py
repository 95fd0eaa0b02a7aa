"""Leaderboard: many records in, one ranked table per GPU model out.

A time on one GPU says nothing about a time on another, a time to 94% says nothing about a time
to 93%, and an accuracy on the JPEG-q75 copy is not one on CIFAR-10, so entries are grouped by
(GPU model, dataset copy, target) and ranked only inside their group.
An entry is ranked by its mean time-to-target when every run finished and the mean final test
accuracy meets the target; anything else is listed under the ranked ones with the reason. A record
cut short before its last run (``complete: false``) is read like any other, from the runs it
finished, and its row says so.

All numbers are recomputed from the runs' raw values (``final_test_acc``, ``time_to_target_s``)
rather than copied from the record's summary, so the table is the evidence, not a claim about it.
Conventions:

* accuracy: mean and 95% Student-t CI over the runs that have a final test accuracy;
* reached: share of *all* runs (failed ones included) that reached the target;
* time-to-target: mean and 95% CI over the runs that reached it (so a ranked entry whose share
  is below 100% shows it in the "reached" column; its time describes the runs that got there);
* a different ``target`` than the record's own is answered from the per-epoch curves: the
  ``elapsed_s`` of the first evaluated epoch whose ``test_acc`` meets it;
* times a sweep took side by side on CPUs (``sweep.concurrent_times``) are listed, never ranked;
* GPU: ``environment.gpu_name``, or ``"CPU"`` when ``environment.device`` is cpu;
* kind ``"train"`` gives one entry; kind ``"anchor"`` gives one entry per element of its
  ``sides: [{"label", "runs", "summary"}]`` (recipe shown as ``recipe [label]``), or one entry
  from its top-level runs when it has no sides; other kinds (``lr_find``) are not benchmark
  results and are left out with a note.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from speedrun.errors import RecordError, SpeedrunError
from speedrun.results.records import completeness_note, find_record_files, read_record
from speedrun.results.run_values import (
    gpu_label,
    is_number,
    run_accuracies,
    run_times_to_target,
    schedule_label,
    times_taken_concurrently,
)
from speedrun.results.stats import Summary, summarize
from speedrun.settings import check, setting

BENCHMARK_KINDS = ("train", "anchor")
CONCURRENT_NOTE = "times taken side by side with other runs (a sweep on CPUs): they rank nothing"
FORMATS = ("table", "markdown", "csv", "json")


@dataclass(frozen=True)
class LeaderboardOptions:
    """How ``speedrun leaderboard`` ranks and where it writes."""

    format: str = setting("table", "output format", choices=FORMATS)
    target: float | None = setting(None, "rank against this accuracy in (0, 1] instead of each record's own target",
                                   low=0, low_open=True, high=1, metavar="T")
    out: str | None = setting(None, "write to a new FILE instead of stdout (never overwritten)", metavar="FILE")
    variants: str | None = setting(None, "only these variants of a sweep's folder, comma-separated (a label such as "
                                         "one-cycle@batch-size=512, or a variant's name)", metavar="NAMES")

    def __post_init__(self) -> None:
        check(self)
CSV_FIELDS = (
    "rank", "recipe", "schedule", "gpu", "target", "runs", "finished", "accuracy_mean", "accuracy_ci95_half",
    "reached", "reached_share", "time_to_target_mean_s", "time_to_target_ci95_half_s",
    "gpu_util_mean", "dataset", "date", "commit", "source", "note", "caveat", "variant", "grid",
)


@dataclass(frozen=True)
class RunSet:
    """One distribution of seeded runs to rank: a train record, or one side of an anchor."""

    label: str
    runs: tuple[dict, ...]
    summary: dict


@dataclass(frozen=True)
class LeaderboardEntry:
    """One row: a recipe's runs on one GPU, summarised; ``note`` says why it is unranked."""

    rank: int | None
    recipe: str
    schedule: str          # the lr policy and any extension the recipe does not have by default
    gpu: str
    target: float
    runs: int
    finished: int
    accuracy: Summary
    reached: int
    time_to_target: Summary
    gpu_util_mean: float | None
    dataset: str
    date: str
    commit: str
    source: str | None
    note: str = ""         # why the entry is not ranked ("" when it is)
    caveat: str = ""       # shown beside a ranked entry too: an incomplete (cut-short) record
    variant: str = ""      # a sweep's variant ("" outside a sweep)
    grid: str = ""         # and its grid cell: "batch-size=512, cutout=8"

    @property
    def remarks(self) -> str:
        return "; ".join(text for text in (self.note, self.caveat) if text)

    @property
    def reached_share(self) -> float | None:
        return self.reached / self.runs if self.runs else None

    @property
    def accuracy_ci95_half(self) -> float | None:
        return _half_width(self.accuracy)

    @property
    def time_ci95_half(self) -> float | None:
        return _half_width(self.time_to_target)

    def to_dict(self) -> dict:
        """Flat, numeric, JSON/CSV-ready view (fractions, seconds; None where unknown)."""
        return {
            "rank": self.rank,
            "recipe": self.recipe,
            "schedule": self.schedule,
            "gpu": self.gpu,
            "target": self.target,
            "runs": self.runs,
            "finished": self.finished,
            "accuracy_mean": self.accuracy.mean,
            "accuracy_ci95_half": self.accuracy_ci95_half,
            "reached": self.reached,
            "reached_share": self.reached_share,
            "time_to_target_mean_s": self.time_to_target.mean,
            "time_to_target_ci95_half_s": self.time_ci95_half,
            "gpu_util_mean": self.gpu_util_mean,
            "dataset": self.dataset,
            "date": self.date,
            "commit": self.commit,
            "source": self.source,
            "note": self.note,
            "caveat": self.caveat,
            "variant": self.variant,
            "grid": self.grid,
        }


@dataclass(frozen=True)
class LeaderboardGroup:
    """Entries that may be ranked against each other: same GPU model, dataset copy and target."""

    gpu: str
    dataset: str
    target: float
    ranked: tuple[LeaderboardEntry, ...] = field(default_factory=tuple)
    unranked: tuple[LeaderboardEntry, ...] = field(default_factory=tuple)

    @property
    def title(self) -> str:
        return f"{self.gpu} · {self.dataset} · target {_pct(self.target)}"

    @property
    def entries(self) -> tuple[LeaderboardEntry, ...]:
        return self.ranked + self.unranked


# ---------------------------------------------------------------------------------------------
# Reading


def load_records(paths: Iterable[str | os.PathLike]) -> tuple[list[dict], list[str]]:
    """Read every record under ``paths``; bad files become one-line problems, not a crash.

    Returns ``(records, problems)``. Each record gets a ``source_file`` key (its path) so a row
    can be traced back. Raises :class:`RecordError` when there is nothing to rank at all: no
    JSON files found, or none of them a readable benchmark record.
    """
    paths = list(paths)
    if not paths:
        raise RecordError("no record paths given; pass record files or a folder of them (e.g. results/)")
    files = find_record_files(paths)
    if not files:
        where = ", ".join(str(p) for p in paths)
        raise RecordError(f"no *.json records found in {where}; run 'speedrun train' first or pass another folder")
    records: list[dict] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for path in files:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        try:
            record = read_record(path)
            check_benchmark_fields(record, source=str(path))
        except RecordError as e:
            problems.append(f"skipped {e}")
            continue
        if record["kind"] not in BENCHMARK_KINDS:
            problems.append(f"skipped {path}: a '{record['kind']}' record is not a benchmark result")
            continue
        records.append({**record, "source_file": str(path)})
    if not records:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RecordError(f"no readable benchmark records among {len(seen)} file(s): {problems[0]}{more}")
    return records, problems


def check_benchmark_fields(record: dict, source: str = "record") -> None:
    """Check what ranking relies on beyond the types of the schema; RecordError names the field."""
    for run_set in record_run_sets(record, source):
        for i, run in enumerate(run_set.runs):
            if run.get("reached_target") and run.get("time_to_target_s") is None:
                where = f"{source}: {run_set.label} runs[{i}]" if run_set.label else f"{source}: runs[{i}]"
                raise RecordError(f"{where}: reached_target is true but time_to_target_s is missing")


def record_run_sets(record: dict, source: str = "record") -> list[RunSet]:
    """The distributions a record holds: its runs, or each side of an anchor record."""
    sides = record.get("sides")
    if record.get("kind") == "anchor" and sides is not None:
        if not sides:
            raise RecordError(f"{source}: field 'sides' must be a non-empty list of {{label, runs, summary}}")
        return [RunSet(side["label"], tuple(side["runs"]), side.get("summary") or {}) for side in sides]
    return [RunSet("", tuple(record["runs"]), record["summary"])]





# ---------------------------------------------------------------------------------------------
# Ranking


def build_leaderboard(records: Sequence[dict], target: float | None = None) -> list[LeaderboardGroup]:
    """Group entries by (GPU, dataset copy, target) and rank each group by mean time-to-target.

    ``target=None`` uses each record's own target (records with different targets land in
    different groups); a number re-evaluates every record against that target.
    """
    if target is not None and not (0 < target <= 1):
        raise SpeedrunError(f"--target must be an accuracy in (0, 1], got {target}; e.g. --target 0.94")
    entries = [entry for record in records for entry in _record_entries(record, target)]
    groups: dict[tuple[str, str, float], list[LeaderboardEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.gpu, entry.dataset, entry.target), []).append(entry)
    out = []
    for (gpu, dataset, group_target), members in sorted(
            groups.items(), key=lambda kv: (kv[0][0].lower(), kv[0][1], -kv[0][2])):
        ranked = sorted((e for e in members if not e.note), key=lambda e: (e.time_to_target.mean, -(e.accuracy.mean or 0)))
        ranked = [replace(e, rank=i + 1) for i, e in enumerate(ranked)]
        unranked = sorted((e for e in members if e.note), key=lambda e: (e.recipe, e.date))
        out.append(LeaderboardGroup(gpu, dataset, group_target, tuple(ranked), tuple(unranked)))
    return out


def _record_entries(record: dict, target: float | None) -> list[LeaderboardEntry]:
    source = record.get("source_file")
    goal = float(record["target"]) if target is None else float(target)
    env = record["environment"]
    commit = (env.get("git_commit") or "")[:7]
    if commit and env.get("git_dirty"):
        commit += "+dirty"
    entries = []
    for run_set in record_run_sets(record, source or "record"):
        runs = run_set.runs
        accuracy = summarize(run_accuracies(runs))
        times = summarize(run_times_to_target(runs, goal, float(record["target"])))
        finished = sum(1 for r in runs if r.get("status") == "ok")
        util = run_set.summary.get("gpu_util_mean")
        entry = LeaderboardEntry(
            rank=None,
            recipe=f"{record['recipe']} [{run_set.label}]" if run_set.label else record["recipe"],
            schedule=schedule_label(record),
            gpu=gpu_label(record),
            target=goal,
            runs=len(runs),
            finished=finished,
            accuracy=accuracy,
            reached=times.n,
            time_to_target=times,
            gpu_util_mean=float(util) if util is not None and is_number(util) else None,
            dataset=str(record["dataset"].get("name") or "?"),
            date=record["created"][:10],
            commit=commit or "?",
            source=source,
            caveat=completeness_note(record),
            **sweep_names(record),
        )
        note = CONCURRENT_NOTE if times_taken_concurrently(record) else _unranked_reason(entry)
        entries.append(replace(entry, note=note))
    return entries


def sweep_names(record: dict) -> dict[str, str]:
    """A sweep record's variant and grid cell, as the leaderboard shows them ("" when not a sweep's)."""
    sweep = record.get("sweep")
    if not isinstance(sweep, dict):
        return {}
    variant = sweep.get("variant")
    grid = sweep.get("grid")
    cell = ", ".join(f"{k}={v}" for k, v in grid.items() if isinstance(v, str | int | float | list)) \
        if isinstance(grid, dict) else ""
    return {"variant": variant if isinstance(variant, str) else "", "grid": cell}


def _unranked_reason(entry: LeaderboardEntry) -> str:
    if entry.runs == 0:
        return "no runs"
    if entry.finished < entry.runs:
        return f"{entry.runs - entry.finished} of {entry.runs} runs diverged or failed"
    if entry.accuracy.mean is None:
        return "no run has a final test accuracy"
    if entry.accuracy.mean < entry.target:
        return f"mean accuracy {_pct(entry.accuracy.mean)} is below the target {_pct(entry.target)}"
    if entry.time_to_target.n == 0:
        return "no run reached the target"
    return ""


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _half_width(s: Summary) -> float | None:
    """Half the 95% CI's width, or None where there is no interval (fewer than two runs)."""
    if s.n < 2 or s.ci95_high is None or s.mean is None:
        return None
    return s.ci95_high - s.mean
