"""Records for outside tools: a flat per-run, per-epoch CSV, and DAWNBench's submission files.

* ``csv``: one row per epoch of every run (an anchor record's runs per side), with the record's
  identity (recipe, GPU, dataset copy, commit, target) repeated on each row, so a spreadsheet
  or a data frame needs no JSON.
* ``dawnbench``: what the DAWNBench training-time entries hold: a JSON metadata file and, per
  run, a TSV of ``epoch``, ``hours`` (wall time since the start of the timed part) and
  ``top1Accuracy`` (percent) for every evaluated epoch. The metadata names the code by its git
  commit; fields speedrun cannot know (author, cost per hour) are null for the submitter.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from speedrun.errors import SpeedrunError
from speedrun.outputs import check_output, csv_text, publish
from speedrun.results.run_values import gpu_label, is_number, schedule_label
from speedrun.settings import check, setting

FORMATS = ("csv", "dawnbench")


@dataclass(frozen=True)
class ExportOptions:
    """What ``speedrun export`` writes, and where."""

    format: str = setting("csv", "csv: one row per epoch of every run; dawnbench: DAWNBench's submission files",
                          choices=FORMATS)
    out: str | None = setting(None, "csv: the file (default: <record>-epochs.csv beside it); dawnbench: the folder "
                                    "(default: <record>-dawnbench/ beside it)", metavar="PATH")
    force: bool = setting(False, "replace existing files", false_flag=None)

    def __post_init__(self) -> None:
        check(self)
CSV_COLUMNS = ("recipe", "side", "seed", "status", "epoch", "lr", "train_loss", "train_acc", "test_acc", "elapsed_s",
               "reached_target", "time_to_target_s", "final_test_acc", "target", "schedule", "gpu", "dataset",
               "created", "commit", "complete")


def record_runs(record: dict) -> list[tuple[str, dict]]:
    """``(side label, run)`` for every run; the label is "" outside anchor records."""
    sides = record.get("sides") if record.get("kind") == "anchor" else None
    if isinstance(sides, list) and sides:
        return [(str(side.get("label", "")), run) for side in sides for run in side.get("runs", [])]
    return [("", run) for run in record.get("runs", [])]


def epochs_csv(record: dict) -> str:
    """The flat per-run, per-epoch table (module docstring)."""
    env = record.get("environment", {})
    fixed = {"recipe": record.get("recipe"), "target": record.get("target"), "schedule": schedule_label(record),
             "gpu": gpu_label(record), "dataset": (record.get("dataset") or {}).get("name"),
             "created": record.get("created"), "commit": env.get("git_commit"),
             "complete": record.get("complete", True)}
    rows = []
    for side, run in record_runs(record):
        per_run = {"side": side, "seed": run.get("seed"), "status": run.get("status"),
                   "reached_target": run.get("reached_target"), "time_to_target_s": run.get("time_to_target_s"),
                   "final_test_acc": run.get("final_test_acc")}
        for epoch in run.get("epochs", []):
            row = {**fixed, **per_run, **{k: epoch.get(k) for k in ("epoch", "lr", "train_loss", "train_acc",
                                                                    "test_acc", "elapsed_s")}}
            rows.append([row[c] for c in CSV_COLUMNS])
    return csv_text(CSV_COLUMNS, rows)


def dawnbench_metadata(record: dict) -> dict:
    """DAWNBench's JSON metadata for the record (what it cannot know is null)."""
    env = record.get("environment", {})
    recipe = (record.get("config") or {}).get("recipe") or {}
    return {
        "version": "v1.0",
        "author": None,
        "authorEmail": None,
        "framework": f"PyTorch {env.get('torch')}" + (f", CUDA {env['cuda']}" if env.get("cuda") else ""),
        "codeURL": f"speedrun at git commit {env.get('git_commit')}" + (" (uncommitted changes)" if env.get("git_dirty")
                                                                       else ""),
        "model": f"{record.get('recipe')}: {recipe.get('description', '')}".rstrip(": "),
        "hardware": gpu_label(record),
        "costPerHour": None,
        "timestamp": str(record.get("created", ""))[:10],
        "misc": {"dataset": (record.get("dataset") or {}).get("name"), "target": record.get("target"),
                 "schedule": schedule_label(record), "timer_rule": record.get("timer_rule"),
                 "runs": len(record_runs(record)), "complete": record.get("complete", True)},
    }


def dawnbench_tsv(run: dict) -> str:
    """``epoch  hours  top1Accuracy`` for the run's evaluated epochs (accuracy in percent)."""
    lines = ["epoch\thours\ttop1Accuracy"]
    for epoch in run.get("epochs", []):
        if is_number(epoch.get("test_acc")) and is_number(epoch.get("elapsed_s")):
            lines.append(f"{epoch['epoch']}\t{epoch['elapsed_s'] / 3600:.8f}\t{100 * epoch['test_acc']:.2f}")
    return "\n".join(lines) + "\n"


def export_record(record: dict, fmt: str, out: str | os.PathLike, *, stem: str, force: bool = False) -> list[Path]:
    """Write ``record`` in ``fmt``: ``csv`` to the file ``out``; ``dawnbench`` into the folder ``out``
    (``<stem>.json`` and ``<stem>-<side>seed<k>.tsv`` per run). Never over a file unless ``force``."""
    if fmt == "csv":
        text = epochs_csv(record)
        return [publish(check_output(out, force=force, flag="--out"), lambda f: f.write(text), binary=False,
                        replace=force)]
    folder = check_output(out, flag="--out", folder=True)
    files: dict[Path, str] = {folder / f"{stem}.json": json.dumps(dawnbench_metadata(record), indent=1) + "\n"}
    for side, run in record_runs(record):
        prefix = "".join(ch if ch.isalnum() else "_" for ch in side).strip("_")
        name = f"{stem}-{prefix + '-' if prefix else ''}seed{run.get('seed')}.tsv"
        files[folder / name] = dawnbench_tsv(run)
    taken = [path for path in files if path.exists()]
    if taken and not force:
        raise SpeedrunError(f"{taken[0]} already exists; pass --force to replace it or choose a new --out folder")
    for path in files:
        check_output(path, force=force, flag="--out")
    return [_publish_text(path, text, replace=force) for path, text in files.items()]


def _publish_text(path: Path, text: str, *, replace: bool) -> Path:
    return publish(path, lambda f: f.write(text), binary=False, replace=replace)
