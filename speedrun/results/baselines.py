"""The baseline a regression gate compares against, and the floors it implies.

A time or an accuracy only means something next to a record of the same recipe (same config,
same schedule), on the same dataset copy, on the same GPU model. This module finds the newest
such record among result files and turns it into the gate's numbers, so the rule lives in one
tested place instead of inside a slow GPU test:

* target: on the official CIFAR-10 the recipe's own; on any other copy (the offline JPEG-q75
  one) the recipe's minus :data:`JPEG_COPY_MARGIN`, since the copy's pixels lose some accuracy;
* accuracy floor: on the official CIFAR-10 the recipe's target (that is its claim); on another
  copy the baseline's mean minus a noise allowance, or, with no baseline yet, that copy's target;
* time gate: the mean time-to-target may grow by at most :data:`TIME_TOLERANCE` over the
  baseline's; without a baseline there is nothing to compare and the gate says why.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speedrun.data.cifar10 import SOURCE_OFFICIAL
from speedrun.errors import RecordError
from speedrun.results.records import find_record_files, read_record

if TYPE_CHECKING:
    from speedrun.recipes import Recipe

# Unmeasured allowance for the offline copy (see tests/benchmarks/README.md): training and
# testing on JPEG-q75 pixels (PSNR 30 dB) loses some accuracy against the official images. A
# placeholder until the first GPU baseline record on the copy exists; then that record rules.
JPEG_COPY_MARGIN = 0.015
# Least allowed drop of a mean accuracy below a baseline's mean, in accuracy units (0.3 points).
# The published seed-to-seed std of such runs (airbench94, Page's ResNet-9) is about 0.15 points
# (not yet measured here), so two means of 5 runs differ by ~0.1 points (1 std); 0.3 is ~3 std.
# A noisier baseline widens it (see accuracy_floor).
BASELINE_ACCURACY_TOLERANCE = 0.003
# Allowed growth of the mean time-to-target over the baseline's (0.10 = 10%). Time-to-target is
# read at evaluations, so a run that needs one more epoch of classic's 24 is ~4% later: 10% allows
# that and timing noise, and still catches a loop that got slower across the board.
TIME_TOLERANCE = 0.10


def device_slug(name: str) -> str:
    """A folder name for a device: ``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug:
        raise ValueError(f"device name {name!r} has no letters or digits to name a folder by")
    return slug


@dataclass(frozen=True)
class BaselineQuery:
    """What a record must match to be the baseline of a run; a None field matches anything.

    ``recipe`` (a :class:`~speedrun.recipes.Recipe`) is matched by name, by its whole config and
    by the per-step learning rates the record trained with, so a run made with ``--epochs`` or
    ``--schedule`` overrides, which keeps the recipe's name, is never taken for the recipe.
    """

    recipe: Recipe
    dataset: str                      # the record's dataset.name, e.g. "CIFAR-10 (JPEG-q75 copy)"
    gpu_name: str | None              # environment.gpu_name; None means a CPU record
    target: float | None = None
    train_size: int | None = None
    test_size: int | None = None
    compile: bool | None = None

    @classmethod
    def for_record(cls, record: dict, recipe: Recipe) -> BaselineQuery:
        """The query for ``record``'s baseline: its dataset, GPU, target, sizes and compile setting."""
        dataset = record["dataset"]
        return cls(recipe=recipe, dataset=dataset["name"], gpu_name=record["environment"].get("gpu_name"),
                   target=record["target"], train_size=dataset.get("train_size"), test_size=dataset.get("test_size"),
                   compile=record["config"].get("compile"))

    def mismatch(self, record: dict) -> str | None:
        """Why ``record`` is not this query's baseline, or None when it is."""
        if record.get("kind") != "train":
            return f"kind {record.get('kind')!r}, not a train record"
        if record["recipe"] != self.recipe.name:
            return f"recipe {record['recipe']!r}"
        try:
            _parse_created(record["created"])
        except ValueError:
            return f"'created' is not an ISO-8601 time: {record['created']!r}"
        if _json_normal(record["config"].get("recipe")) != _json_normal(self.recipe.to_dict()):
            return f"a different config of recipe {self.recipe.name!r} (overridden or since changed)"
        checks = [
            ("dataset", record["dataset"].get("name"), self.dataset),
            ("GPU", record["environment"].get("gpu_name"), self.gpu_name),
            ("target", record["target"], self.target),
            ("train_size", record["dataset"].get("train_size"), self.train_size),
            ("test_size", record["dataset"].get("test_size"), self.test_size),
            ("compile", record["config"].get("compile"), self.compile),
        ]
        for what, found, wanted in checks:
            if (wanted is not None or what == "GPU") and found != wanted:
                return f"{what} {found!r}, not {wanted!r}"
        if not self._same_schedule(record.get("schedule") or {}):
            return "learning rates differ from the recipe's schedule (a --schedule override?)"
        if not record["summary"].get("completed"):
            return "no completed run"
        return None

    def _same_schedule(self, stored: dict) -> bool:
        lr, steps_per_epoch = stored.get("lr"), stored.get("steps_per_epoch")
        if not lr or not steps_per_epoch:
            return False
        built = self.recipe.schedule.build(len(lr), steps_per_epoch).lr.tolist()
        return len(built) == len(lr) and all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
                                             for a, b in zip(built, lr))


@dataclass(frozen=True)
class Baseline:
    """One matching record and the numbers a gate reads from it."""

    path: Path
    record: dict

    @property
    def created(self) -> datetime:
        return _parse_created(self.record["created"])

    @property
    def accuracy(self) -> dict:
        return self.record["summary"]["accuracy"]

    @property
    def time_to_target(self) -> dict:
        return self.record["summary"]["time_to_target"]

    def describe(self) -> str:
        acc, ttt = self.accuracy, self.time_to_target
        time = f"{ttt['mean']:.2f}s over {ttt['n']} runs" if ttt.get("n") else "no run reached the target"
        return (f"{self.path} ({self.record['created']}, commit {self.record['environment'].get('git_commit')}): "
                f"accuracy {acc['mean']:.4f} over {acc['n']} runs, time to {self.record['target']} {time}")


@dataclass(frozen=True)
class BaselineSearch:
    """The newest match (or None), plus what was passed over, so a gate can say why it has none."""

    baseline: Baseline | None
    near_misses: tuple[str, ...] = field(default=())   # "path: reason" for records of this recipe
    unreadable: tuple[str, ...] = field(default=())    # "path: reason" for files that are not records

    def explain(self) -> str:
        """One paragraph for a skip or failure message."""
        if self.baseline is not None:
            return f"baseline: {self.baseline.describe()}"
        lines = ["no baseline record matches"]
        lines += [f"  passed over {m}" for m in self.near_misses]
        if self.unreadable:
            lines.append(f"  ({len(self.unreadable)} JSON files were not readable records)")
        return "\n".join(lines)


def find_baseline(paths: Iterable[str | os.PathLike], query: BaselineQuery, *,
                  exclude: Iterable[str | os.PathLike] = ()) -> BaselineSearch:
    """Search files and folders (recursively) for the newest record matching ``query``.

    ``exclude`` names records that are never the baseline (the run being judged, when it was
    written among them). Files that are not readable records (e.g. pytest-benchmark JSON beside
    them) are skipped and listed; a missing folder is simply an empty search. Newest means the
    latest ``created``, ties broken by path.
    """
    existing = [p for p in map(Path, paths) if p.exists()]
    excluded = {Path(p).resolve() for p in exclude}
    matches: list[Baseline] = []
    near_misses: list[str] = []
    unreadable: list[str] = []
    for path in find_record_files(existing):
        if path.resolve() in excluded:
            continue
        try:
            record = read_record(path)
        except RecordError as e:
            unreadable.append(str(e))
            continue
        reason = query.mismatch(record)
        if reason is None:
            matches.append(Baseline(path, record))
        elif record.get("recipe") == query.recipe.name:
            near_misses.append(f"{path}: {reason}")
    best = max(matches, key=lambda b: (b.created, str(b.path)), default=None)
    return BaselineSearch(best, tuple(near_misses), tuple(unreadable))


def gate_target(recipe_target: float, dataset: str) -> float:
    """The accuracy a gated run aims for: the recipe's on the official CIFAR-10, less the margin elsewhere."""
    return recipe_target if dataset == SOURCE_OFFICIAL else round(recipe_target - JPEG_COPY_MARGIN, 6)


def accuracy_floor(target: float, dataset: str, baseline: Baseline | None, runs: int) -> tuple[float, str]:
    """The mean accuracy a run of ``runs`` seeds must reach, and the reason for that number.

    Official CIFAR-10: the target. Another copy with a baseline: its mean minus the larger of
    :data:`BASELINE_ACCURACY_TOLERANCE` and 3 standard errors of the difference of the two
    means (estimated from the baseline's spread). Another copy without one: target minus
    :data:`JPEG_COPY_MARGIN`.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if dataset == SOURCE_OFFICIAL:
        return target, f"the recipe's target {target:.4f} on the official {dataset}"
    acc = baseline.accuracy if baseline is not None else None
    if acc and acc.get("n") and acc.get("mean") is not None:
        spread = 3 * (acc.get("std") or 0.0) * math.sqrt(1 / acc["n"] + 1 / runs)
        allowance = max(BASELINE_ACCURACY_TOLERANCE, spread)
        return acc["mean"] - allowance, (f"baseline mean {acc['mean']:.4f} minus {allowance:.4f} "
                                         f"(noise allowance) on {dataset}")
    floor = gate_target(target, dataset)
    return floor, (f"no baseline on {dataset}: the target {target:.4f} minus the copy's margin "
                   f"{JPEG_COPY_MARGIN} (a placeholder until a GPU baseline record exists)")


def time_ratio(current_mean_s: float, baseline: Baseline) -> float | None:
    """Current mean time-to-target over the baseline's (1.05 = 5% slower); None if it has none."""
    ttt = baseline.time_to_target
    if not ttt.get("n") or not ttt.get("mean"):
        return None
    return current_mean_s / ttt["mean"]


def _parse_created(text: str) -> datetime:
    """A record's ``created``; a time without a zone is taken as UTC, so all compare."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _json_normal(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing with a record."""
    return json.loads(json.dumps(value))
