"""Real result records for the leaderboard, compare and plot tests, made by the real harness.

Every happy-path number in those tests comes from actual CPU training runs through
``speedrun.bench.harness.run_benchmark``: tiny ResNet-9 widths, 256 synthetic train / 128 test
images (coloured squares a small net learns in a few steps), a few epochs, well under a second
a run. They are made once per test session into a temporary folder and shared read-only;
a test that needs a variant copies a record and changes only what it says it changes.

The ``cpu_records`` fixture (tests/conftest.py) makes them; helpers for variants are here.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.models.resnet9 import ResNet9Config
from speedrun.recipes import CLASSIC
from speedrun.results.records import read_record, write_record
from speedrun.training.config import TrainConfig
from tests.support.synthetic import make_synthetic

TARGET = 0.3          # reachable in a few epochs on the synthetic data
UNREACHABLE = 0.999   # a target these tiny runs never reach: gives an unranked entry
RUNS = 3


@dataclass(frozen=True)
class CpuRecords:
    """Paths of the real records, all in ``folder`` (the ``single`` one lives apart)."""

    folder: Path
    narrow: Path        # tiny-narrow, RUNS runs, target TARGET
    wide: Path          # tiny-wide (more channels, so slower on CPU), RUNS runs, target TARGET
    unreachable: Path   # tiny-narrow toward UNREACHABLE, RUNS runs
    single: Path        # tiny-narrow, one run only (in a separate folder)

    def load(self, name: str) -> dict:
        return read_record(getattr(self, name))


def _recipe(name: str, widths: tuple[int, int, int, int]):
    return CLASSIC.replace(
        name=name,
        model=ResNet9Config(widths=widths),
        train=TrainConfig(epochs=4, batch_size=32, eval_batch_size=128, stop_at_target=False),
    )


def _train(recipe, out: Path, *, runs: int, target: float, seed: int = 0) -> Path:
    data = make_synthetic(train=256, test=128, seed=0)
    options = HarnessOptions(runs=runs, seed=seed, target=target, device="cpu", compile=False, out=str(out))
    record = run_benchmark(recipe, options, data=data, log=lambda line: None, command=["pytest"])
    return Path(record["_path"])


@contextlib.contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """Tiny nets gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's
    spin-waiting made these runs 6-8x slower with two; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def make_cpu_records(root: Path) -> CpuRecords:
    """Train the records once per root (cached), into ``root``."""
    with _one_cpu_thread():
        return _train_all(root)


def _train_all(root: Path) -> CpuRecords:
    folder = root / "records"
    narrow = _recipe("tiny-narrow", (8, 16, 16, 32))
    wide = _recipe("tiny-wide", (16, 24, 32, 48))
    return CpuRecords(
        folder=folder,
        narrow=_train(narrow, folder / "narrow.json", runs=RUNS, target=TARGET),
        wide=_train(wide, folder / "wide.json", runs=RUNS, target=TARGET),
        unreachable=_train(narrow, folder / "unreachable.json", runs=2, target=UNREACHABLE, seed=10),
        single=_train(narrow, root / "single" / "single.json", runs=1, target=TARGET, seed=20),
    )


def variant(record: dict, path: Path, **changes) -> Path:
    """Write a deep copy of ``record`` with nested-key ``changes``.

    Keys name a path by ``__`` (``environment__gpu_name=...``) or, passed as ``**{...}``, by dots
    (``"environment.gpu_name"``).
    """
    out = copy.deepcopy(record)
    out.pop("source_file", None)
    for dotted, value in changes.items():
        *parents, leaf = re.split(r"__|\.", dotted)
        node = out
        for key in parents:
            node = node[key]
        node[leaf] = value
    return write_record(out, path)


def scale_times(record: dict, factor: float) -> dict:
    """The same runs as if on a machine ``factor`` times as slow: every time multiplied."""
    out = copy.deepcopy(record)
    out.pop("source_file", None)
    for run in out["runs"]:
        for epoch in run["epochs"]:
            epoch["elapsed_s"] *= factor
        if run.get("time_to_target_s") is not None:
            run["time_to_target_s"] *= factor
        run["train_time_s"] *= factor
    return out


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def dump(path: Path, obj: object) -> Path:
    return write_text(path, json.dumps(obj))
