"""A sweep's folder: one file per run as it lands, the tables, and one merged record per variant.

``DIR/VARIANT.json`` (the variant's runs merged: what the record commands read; one per GPU model
when runs ran on several), ``runs/VARIANT/seed-N.run.json`` and ``tune/VARIANT/trial-K.run.json``
(one run or trial each: a record, or why there is none), ``runs.csv`` and ``trials.csv``,
``sweep.json`` (the spec that owns the folder) and ``sweep-summary.md``; Ray Tune's logs are
under ``logs/``. A run's file is its proof of being done: a second start skips it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speedrun.bench.harness import compact_values, summarize_run_dicts
from speedrun.errors import SpeedrunError
from speedrun.outputs import check_output, csv_text, publish
from speedrun.results.records import RUN_PIECE_SUFFIX, record_text, utc_now, validate_record
from speedrun.results.records import SWEEP_OWNER_NAME as OWNER_NAME
from speedrun.results.run_values import gpu_label

FAILURE_SCHEMA = "speedrun.sweep_failure"
OWNER_SCHEMA = "speedrun.sweep"
SUMMARY_NAME = "sweep-summary.md"


@dataclass(frozen=True)
class Piece:
    """What one run's (or trial's) file says: a record (finished, diverged or not), or why there is none."""

    path: Path
    record: dict | None = None
    error: str | None = None
    attempts: int = 1
    status: str = "failed"        # the run's status; without a record: failed, or stopped (early, when tuning)
    params: dict = field(default_factory=dict)       # a tuning trial's values
    accuracy: float | None = None

    @property
    def finished(self) -> bool:
        return self.record is not None

    def row(self) -> dict:
        """Its columns in the sweep's tables: the accuracy as its shortest float32 decimals (``0.378``,
        not ``0.3779999911785126``), times to the millisecond."""
        run = (self.record or {"runs": [{}]})["runs"][0]

        def seconds(key: str) -> float | None:
            value = run.get(key)
            return None if value is None else round(value, 3)

        return {"status": self.status, "accuracy": None if self.accuracy is None else compact_values([self.accuracy])[0],
                "train_time_s": seconds("train_time_s"), "time_to_target_s": seconds("time_to_target_s"),
                "reached_target": run.get("reached_target"), "attempts": self.attempts, "error": self.error,
                "file": str(self.path)}


class SweepFolder:
    """Reads and writes one sweep's folder (see the module's docstring for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not str(root).strip():
            raise SpeedrunError("--out is empty; give the sweep's folder")
        if self.root.suffix.lower() == ".json":
            raise SpeedrunError(f"--out {root} names a record file; a sweep writes a folder: give a folder path")
        check_output(self.root, flag="--out", folder=True)

    def run_path(self, run_id: str) -> Path:
        label, seed = run_id.rsplit("/", 1)
        return self.root / "runs" / label / f"{seed}{RUN_PIECE_SUFFIX}"

    def trial_path(self, label: str, index: int) -> Path:
        return self.root / "tune" / label / f"trial-{index}{RUN_PIECE_SUFFIX}"

    def read_piece(self, path: Path) -> Piece | None:
        """The piece at ``path``; None when there is none, or it is unreadable (then it runs again)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and data.get("schema") == FAILURE_SCHEMA:
            acc = data.get("accuracy")
            return Piece(path, error=str(data.get("error")), attempts=int(data.get("attempts", 1)),
                         status=str(data.get("status", "failed")), params=dict(data.get("params") or {}),
                         accuracy=float(acc) if isinstance(acc, int | float) else None)
        try:
            validate_record(data, str(path))
        except SpeedrunError:
            return None
        run, sweep = data["runs"][0], data.get("sweep") or {}
        return Piece(path, record=data, error=run.get("error"), attempts=int(sweep.get("attempts", 1)),
                     status=run["status"], params=dict(sweep.get("params") or {}), accuracy=run.get("final_test_acc"))

    def write_record_piece(self, path: Path, record: dict) -> None:
        _write_text(path, record_text({**record, "complete": True}))

    def write_failure(self, path: Path, run_id: str, seed: int, error: str, attempts: int, *, status: str = "failed",
                      params: Mapping | None = None, accuracy: float | None = None) -> None:
        """A run (or trial) that left no record: why, after how many attempts, and its last accuracy if stopped."""
        failure = {"schema": FAILURE_SCHEMA, "run_id": run_id, "seed": seed, "status": status, "error": error,
                   "attempts": attempts, "params": dict(params or {}), "accuracy": accuracy, "created": utc_now()}
        _write_text(path, json.dumps(failure, indent=1) + "\n")

    def write_table(self, name: str, rows: Sequence[Mapping]) -> Path:
        """``DIR/NAME``: ``rows`` as CSV, columns in first-seen order, rewritten whole each time."""
        columns = list({key: None for row in rows for key in row})
        return _write_text(self.root / name, csv_text(columns, ([row.get(c) for c in columns] for row in rows)))

    def check_owner(self, arms: Mapping[str, Mapping]) -> None:
        """Refuse, before any run, a folder that another spec made: its variants, or any of their
        settings, differ (seeds and tuning trials may grow: only what is missing runs)."""
        path = self.root / OWNER_NAME
        if not path.exists():
            theirs = sorted(self.root.glob("*.json")) + [p for p in (self.root / "runs", self.root / "tune") if p.is_dir()]
            if theirs:
                raise SpeedrunError(f"--out {self.root} holds {theirs[0].name} but no {OWNER_NAME}: it is not a sweep's "
                                    f"folder, and a sweep writes its records there; give a new --out")
            return
        try:
            owner = json.loads(path.read_text(encoding="utf-8"))
            theirs = owner["arms"]
            assert owner.get("schema") == OWNER_SCHEMA and isinstance(theirs, dict)
        except (OSError, ValueError, KeyError, TypeError, AssertionError, RecursionError):
            raise SpeedrunError(f"{path}: not a sweep's {OWNER_NAME}; give a new --out") from None
        difference = _difference(theirs, arms)
        if difference:
            raise SpeedrunError(f"--out {self.root} was made by another spec ({owner.get('spec')}): {difference}; give "
                                f"a new --out, or delete the folder to start again")

    def claim(self, name: str, source: str, arms: Mapping[str, Mapping]) -> None:
        """Write ``sweep.json``: this spec owns the folder from now on."""
        owner = {"schema": OWNER_SCHEMA, "name": name, "spec": source, "created": utc_now(), "arms": dict(arms)}
        _write_text(self.root / OWNER_NAME, json.dumps(owner, indent=1, default=str) + "\n")

    def write_summary(self, text: str) -> Path:
        return _write_text(self.root / SUMMARY_NAME, text)

    def merged_path(self, label: str, gpu: str | None = None) -> Path:
        suffix = "" if gpu is None else "--" + re.sub(r"[^A-Za-z0-9.+-]+", "_", gpu)
        return self.root / f"{label}{suffix}.json"


def _difference(theirs: Mapping[str, Mapping], ours: Mapping[str, Mapping]) -> str:
    """The first way two specs' variants differ, in words ("" when they are the same)."""
    if list(theirs) != list(ours):
        added = [label for label in ours if label not in theirs]
        gone = [label for label in theirs if label not in ours]
        if added:
            return f"variant {added[0]!r} is not one of its variants ({', '.join(theirs)})"
        if gone:
            return f"its variant {gone[0]!r} is not in this spec"
        return f"its variants come in another order ({', '.join(theirs)})"
    for label, arm in ours.items():
        old = theirs[label]
        for key in sorted(set(arm) | set(old)):
            a, b = old.get(key, "(not set)"), json.loads(json.dumps(arm.get(key, "(not set)"), default=str))
            if a != b:
                return f"variant {label!r}: {key} was {a!r} there, {b!r} here"
    return ""


def failed_run(seed: int, error: str) -> dict:
    """A run that produced no record (its worker died every attempt), as a record's runs list holds it."""
    return {"seed": seed, "status": "failed", "error": error, "epochs": [], "final_test_acc": None,
            "reached_target": False, "time_to_target_s": None, "train_time_s": None, "nvml": {}}


def merge_runs(label: str, seeds: Sequence[int], pieces: dict[int, Piece], sweep: dict,
               command: Sequence[str]) -> list[tuple[str | None, dict]]:
    """One record per GPU model from an arm's run pieces (by seed), ``complete`` once every seed
    has a piece. Returns (GPU model when the arm ran on several, record); empty while no run has
    a record to take the settings, data and environment from."""
    records = [p.record for p in pieces.values() if p.record is not None]
    if not records:
        return []
    by_gpu: dict[str, list[dict]] = {}
    for r in records:
        by_gpu.setdefault(gpu_label(r), []).append(r)
    several = len(by_gpu) > 1
    failures = [failed_run(seed, p.error or "failed") for seed, p in sorted(pieces.items()) if not p.finished]
    complete = all(seed in pieces for seed in seeds)
    out = []
    for gpu, group in by_gpu.items():
        group = sorted(group, key=lambda r: r["runs"][0]["seed"])
        runs = [run for r in group for run in r["runs"]]
        if gpu == next(iter(by_gpu)):
            runs = sorted(runs + failures, key=lambda run: run["seed"])
        first = group[0]
        merged = {**first, "created": utc_now(), "command": list(command), "runs": runs,
                  "runs_planned": len(seeds), "complete": complete, "summary": summarize_run_dicts(runs),
                  "sweep": {**sweep, "arm": label,
                            "concurrent_times": any(r.get("sweep", {}).get("concurrent_times") for r in group),
                            "run_records": [str(p.path) for p in pieces.values()]}}
        merged["config"] = {**first["config"],
                            "harness": {**first["config"].get("harness", {}), "runs": len(seeds),
                                        "seed": min(seeds)}}
        merged.pop("_path", None)
        out.append((gpu if several else None, merged))
    return out


def write_merged(folder: SweepFolder, label: str, merged: Iterable[tuple[str | None, dict]]) -> list[Path]:
    """Write an arm's merged records (the folder is the sweep's own: :meth:`SweepFolder.check_owner`)."""
    return [_write_text(folder.merged_path(label, gpu), record_text(record)) for gpu, record in merged]


def _write_text(path: Path, text: str) -> Path:
    """A sweep's file, replaced atomically (the folder is the sweep's own); a failure is one line."""
    return publish(path, lambda f: f.write(text), binary=False, replace=True)
