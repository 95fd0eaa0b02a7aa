"""A sweep's folder: one file per run as it finishes, one merged record per variant.

Layout of ``DIR``::

    <label>.json                      the variant's record: its runs merged, what the record
                                      commands read (one per GPU model if runs ran on several)
    runs/<label>/seed-<seed>.run.json one run, written atomically the moment it finishes: a
                                      train record of that run, or a failure note
    tune/<label>/trial-<k>.run.json   one tuning trial, the same way
    sweep-summary.md                  what ran, what won, how many trials each variant had

A run's file is its proof of being done: a sweep started again over the same folder skips every
run whose file holds a record and does the rest, failures included. Folder scans by the record
commands leave the ``*.run.json`` pieces out (:func:`speedrun.results.records.find_record_files`).
"""
from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from speedrun.bench.harness import summarize_run_dicts
from speedrun.errors import SpeedrunError
from speedrun.outputs import check_output, publish
from speedrun.results.records import RUN_PIECE_SUFFIX, record_text, utc_now, validate_record
from speedrun.results.run_values import gpu_label

FAILURE_SCHEMA = "speedrun.sweep_failure"
SUMMARY_NAME = "sweep-summary.md"


@dataclass(frozen=True)
class Piece:
    """What one run's file says: a record (finished, diverged or not), or a failure."""

    path: Path
    record: dict | None = None
    error: str | None = None
    attempts: int = 0

    @property
    def finished(self) -> bool:
        return self.record is not None


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
            return Piece(path, error=str(data.get("error")), attempts=int(data.get("attempts", 0)))
        try:
            validate_record(data, str(path))
        except SpeedrunError:
            return None
        return Piece(path, record=data)

    def write_record_piece(self, path: Path, record: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_text(path, record_text({**record, "complete": True}))

    def write_failure(self, path: Path, run_id: str, seed: int, error: str, attempts: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        failure = {"schema": FAILURE_SCHEMA, "run_id": run_id, "seed": seed, "status": "failed",
                   "error": error, "attempts": attempts, "created": utc_now()}
        _write_text(path, json.dumps(failure, indent=1) + "\n")

    def write_summary(self, text: str) -> Path:
        path = self.root / SUMMARY_NAME
        self.root.mkdir(parents=True, exist_ok=True)
        _write_text(path, text)
        return path

    def merged_path(self, label: str, gpu: str | None = None) -> Path:
        suffix = "" if gpu is None else "--" + re.sub(r"[^A-Za-z0-9.+-]+", "_", gpu)
        return self.root / f"{label}{suffix}.json"


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
    """Write an arm's merged records; a file of that name that is not this arm's merge is refused."""
    paths = []
    for gpu, record in merged:
        path = folder.merged_path(label, gpu)
        _refuse_foreign(path, label)
        folder.root.mkdir(parents=True, exist_ok=True)
        _write_text(path, record_text(record))
        paths.append(path)
    return paths


def check_no_foreign_records(folder: SweepFolder, labels: Iterable[str]) -> None:
    """Before any run: every variant's record name in the folder is free or this sweep's own."""
    for label in labels:
        for path in [folder.merged_path(label), *folder.root.glob(f"{glob.escape(label)}--*.json")]:
            _refuse_foreign(path, label)


def _refuse_foreign(path: Path, label: str) -> None:
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        old = None
    if not (isinstance(old, dict) and isinstance(old.get("sweep"), dict) and old["sweep"].get("arm") == label):
        raise SpeedrunError(f"{path} exists and is not this sweep's record of {label!r}; it was left as it "
                            f"is: give the sweep a new --out folder")


def _write_text(path: Path, text: str) -> Path:
    """A sweep's file, replaced atomically (the folder is the sweep's own); a failure is one line."""
    return publish(path, lambda f: f.write(text), binary=False, replace=True)
