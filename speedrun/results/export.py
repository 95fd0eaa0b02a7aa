"""Records for outside tools: a flat per-run, per-epoch CSV, and DAWNBench's submission files.

* ``csv``: one row per epoch of every run (an anchor record's runs per side), with the record's
  identity (recipe, GPU, dataset copy, commit, target) repeated on each row, so a spreadsheet
  or a data frame needs no JSON.
* ``dawnbench``: DAWNBench's CIFAR-10 training entries (github.com/stanford-futuredata/
  dawn-bench-entries, checked by its tests/test_submissions.py), one per run: a JSON of metadata
  and, with the same name, a TSV of ``epoch``, ``hours`` (wall time since the start of the timed
  part) and ``top1Accuracy`` (percent) for every evaluated epoch. The metadata names the code by
  its git commit and the run by seed (and side); what speedrun cannot know (author, email) is null
  for the submitter. DAWNBench takes only entries that reach 94%: a run that does not is exported
  all the same, its JSON saying so (``misc.note``), and the export warns.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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


DAWNBENCH_VERSION = "v1.0"          # the only version DAWNBench's checks accept
DAWNBENCH_THRESHOLD = 94.0          # top1Accuracy (percent) a CIFAR-10 v1.0 training entry's TSV must reach


def dawnbench_tsv(run: dict) -> str:
    """``epoch  hours  top1Accuracy`` for the run's evaluated epochs (accuracy in percent)."""
    lines = ["epoch\thours\ttop1Accuracy"]
    for epoch in run.get("epochs", []):
        if is_number(epoch.get("test_acc")) and is_number(epoch.get("elapsed_s")):
            lines.append(f"{epoch['epoch']}\t{epoch['elapsed_s'] / 3600:.8f}\t{_percent(epoch['test_acc'])}")
    return "\n".join(lines) + "\n"


def _percent(fraction: float) -> str:
    """Percent to 4 decimals, trailing zeros dropped: enough that rounding never lifts a run over
    the threshold (2 decimals would print 93.996 as 94.00), little enough that float32 noise goes
    (0.94 stored as 0.93999999 prints 94)."""
    return f"{100 * fraction:.4f}".rstrip("0").rstrip(".")


def _best_accuracy(tsv: str) -> float | None:
    """The highest top1Accuracy the TSV text says (what DAWNBench reads), None without rows."""
    values = [float(line.split("\t")[2]) for line in tsv.splitlines()[1:] if line]
    return max(values) if values else None


def dawnbench_metadata(record: dict, side: str = "", run: dict | None = None) -> dict:
    """DAWNBench's JSON metadata for one run of the record. What speedrun cannot know (author and
    email) is null for the submitter; ``costPerHour``, optional there, is left out, since its
    presence is what asks DAWNBench to compute a cost. ``misc`` says which run this is and, when
    the run never reached the threshold, that DAWNBench would refuse it."""
    env = record.get("environment", {})
    recipe = (record.get("config") or {}).get("recipe") or {}
    misc: dict = {"dataset": (record.get("dataset") or {}).get("name"), "target": record.get("target"),
                  "schedule": schedule_label(record), "timer_rule": record.get("timer_rule"),
                  "runs": len(record_runs(record)), "complete": record.get("complete", True)}
    if run is not None:
        misc["run"] = {"seed": run.get("seed"), "side": side or None, "status": run.get("status")}
        best = _best_accuracy(dawnbench_tsv(run))
        reached = best is not None and best >= DAWNBENCH_THRESHOLD
        misc.update(bestTop1Accuracy=best, reachedThreshold=reached, threshold=DAWNBENCH_THRESHOLD)
        if not reached:
            misc["note"] = _below_threshold(best, misc["dataset"])
    return {
        "version": DAWNBENCH_VERSION,
        "author": None,
        "authorEmail": None,
        "framework": f"PyTorch {env.get('torch')}" + (f", CUDA {env['cuda']}" if env.get("cuda") else ""),
        "codeURL": f"speedrun at git commit {env.get('git_commit')}" + (" (uncommitted changes)" if env.get("git_dirty")
                                                                       else ""),
        "model": f"{record.get('recipe')}: {recipe.get('description', '')}".rstrip(": "),
        "hardware": gpu_label(record),
        "timestamp": _date(record),
        "misc": misc,
    }


def _below_threshold(best: float | None, dataset: object) -> str:
    reached = "it has no evaluated epoch" if best is None else f"its best top1Accuracy is {best:g}% ({dataset})"
    return (f"not a DAWNBench entry: {reached}, and DAWNBench's checks refuse a {DAWNBENCH_VERSION} CIFAR-10 "
            f"training entry whose TSV never reaches {DAWNBENCH_THRESHOLD:g}%")


def _date(record: dict) -> str:
    """The record's creation date as ``yyyy-mm-dd``, the only timestamp form DAWNBench takes."""
    date = str(record.get("created") or "")[:10]
    try:
        datetime.strptime(date, "%Y-%m-%d")
    except ValueError:
        raise SpeedrunError(f"the record's created time {record.get('created')!r} does not start with a "
                            f"yyyy-mm-dd date, which DAWNBench's timestamp needs") from None
    return date


def dawnbench_entries(record: dict, stem: str, log: Callable[[str], None] = print) -> dict[str, tuple[dict, str]]:
    """One DAWNBench entry per run with an evaluated epoch, by file stem: ``<stem>-seed<k>`` (an
    anchor record's: ``<stem>-<side>-seed<k>``), each its metadata and TSV, which DAWNBench finds by
    the JSON's name. A run without an evaluated epoch would give an empty TSV, which DAWNBench
    refuses, so it has no entry (a warning says so); no entry at all is an error."""
    entries: dict[str, tuple[dict, str]] = {}
    for side, run in record_runs(record):
        label = "".join(ch if ch.isalnum() else "_" for ch in side).strip("_")
        name = f"{stem}-{label + '-' if label else ''}seed{run.get('seed')}"
        unique, n = name, 2
        while unique in entries:            # the same seed twice, or two sides with the same label
            unique, n = f"{name}-{n}", n + 1
        tsv = dawnbench_tsv(run)
        if _best_accuracy(tsv) is None:
            log(f"warning: run {unique.removeprefix(stem + '-')} has no evaluated epoch, so no DAWNBench entry")
            continue
        entries[unique] = (dawnbench_metadata(record, side, run), tsv)
    if not entries:
        raise SpeedrunError("no run of the record has an evaluated epoch (test accuracy and time), so there is "
                            "nothing to export for DAWNBench")
    return entries


def export_record(record: dict, fmt: str, out: str | os.PathLike, *, stem: str, force: bool = False,
                  log: Callable[[str], None] = print) -> list[Path]:
    """Write ``record`` in ``fmt``: ``csv`` to the file ``out``; ``dawnbench`` into the folder ``out``,
    one entry per run: ``<name>.json`` and ``<name>.tsv`` (``dawnbench_entries``). Every file is
    checked before any is written, and none is replaced unless ``force``. A run below DAWNBench's
    threshold is still exported, its JSON saying why DAWNBench would refuse it, with a warning."""
    if fmt == "csv":
        text = epochs_csv(record)
        return [publish(check_output(out, force=force, flag="--out"), lambda f: f.write(text), binary=False,
                        replace=force)]
    folder = check_output(out, flag="--out", folder=True)
    entries = dawnbench_entries(record, stem, log)
    files: dict[Path, str] = {}
    for name, (meta, tsv) in entries.items():
        files[folder / f"{name}.json"] = json.dumps(meta, indent=1) + "\n"
        files[folder / f"{name}.tsv"] = tsv
    taken = [path for path in files if path.exists()]
    if taken and not force:
        raise SpeedrunError(f"{taken[0]} already exists; pass --force to replace it or choose a new --out folder")
    for path in files:
        check_output(path, force=force, flag="--out")
    below = [name for name, (meta, _) in entries.items() if "note" in meta["misc"]]
    if below:
        best = max(entries[name][0]["misc"]["bestTop1Accuracy"] for name in below)
        log(f"warning: {len(below)} of {len(entries)} DAWNBench entries never reach {DAWNBENCH_THRESHOLD:g}% "
            f"top1Accuracy (best {best:g}%); DAWNBench's checks refuse them, and their JSON says so")
    return [_publish_text(path, text, replace=force) for path, text in files.items()]


def _publish_text(path: Path, text: str, *, replace: bool) -> Path:
    return publish(path, lambda f: f.write(text), binary=False, replace=replace)
