"""Seeded runs of a recipe, their summary, and the record that holds them.

``run_benchmark`` is what ``python -m speedrun`` does: load the data, move it to the device
once (timed apart), build and warm up the model once (timed apart), then train N seeded runs,
print a line per epoch and a summary, and write one JSON record atomically.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speedrun.analysis.flops import FlopEstimate, estimate_flops
from speedrun.data.cifar10 import Cifar10
from speedrun.data.device_data import DeviceData
from speedrun.data.loading import load_cifar10
from speedrun.errors import SpeedrunError
from speedrun.instruments.environment import describe_environment, pick_device
from speedrun.instruments.telemetry import NvmlSampler
from speedrun.instruments.timing import TIMER_RULE, ProgressLog, synchronize
from speedrun.outputs import check_output, format_duration
from speedrun.recipes import Recipe
from speedrun.results.records import (
    DEFAULT_RESULTS_DIR,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    default_record_path,
    utc_now,
    write_record,
)
from speedrun.results.run_values import finished_runs, reached_runs
from speedrun.results.stats import summarize
from speedrun.schedules import Schedule
from speedrun.settings import check, setting
from speedrun.training.cuda_graph import check_cuda_graph_device
from speedrun.training.run_result import EpochLog, RunResult
from speedrun.training.trainer import Trainer

MAX_SEED = 2**63 - 1   # torch.manual_seed's limit on every device


@dataclass(frozen=True)
class HarnessOptions:
    """How many runs, on what, and where the record goes; the recipe says how each run trains."""

    runs: int = setting(1, "number of seeded runs", low=1, high=10_000)
    seed: int = setting(0, "seed of the first run; run i uses seed+i", low=0, high=MAX_SEED)
    target: float | None = setting(None, "test accuracy that ends a run, in (0, 1] (default: the recipe's)", low=0,
                                   low_open=True, high=1)
    device: str | None = setting(None, "cuda, cuda:1 or cpu (default: cuda if present)")
    compile: bool | None = setting(None, "torch.compile the model (default: on CUDA only)")
    data_dir: str | None = setting(None, "folder or file holding CIFAR-10 (default: $SPEEDRUN_DATA_DIR or "
                                         "~/.cache/speedrun)")
    download: bool = setting(True, "never download CIFAR-10 (by default it is downloaded where it is missing)", true_flag=None)
    train_subset: int | None = setting(None, "train on the first N training images", low=1, high=50_000,
                                       metavar="N")
    test_subset: int | None = setting(None, "evaluate on the first N test images", low=1, high=10_000, metavar="N")
    out: str | None = setting(DEFAULT_RESULTS_DIR, f"record folder, or a .json path (default: {DEFAULT_RESULTS_DIR}/)")
    force: bool = setting(False, "replace an existing --out file (never done without it)", false_flag=None)

    def __post_init__(self) -> None:
        check(self)


def record_path(out: str, recipe: str, kind: str = "train") -> Path:
    """Where a record goes: ``out`` itself when it names a ``.json`` file, else a fresh name in it."""
    path = Path(out)
    return path if _names_a_json_file(path) else default_record_path(path, recipe, kind)


def _names_a_json_file(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def format_epoch(entry: EpochLog) -> str:
    test = "   -   " if entry.test_acc is None else f"{entry.test_acc:7.4f}"
    loss = "non-finite" if entry.train_loss is None else f"{entry.train_loss:10.4f}"
    train = "    -    " if entry.train_acc is None else f"{entry.train_acc:9.4f}"
    return (f"{entry.epoch:5d}  {entry.lr:9.5f}  {loss:>10}  {train}  "
            f"{test}  {entry.elapsed_s:9.2f}")


EPOCH_HEADER = "epoch         lr  train_loss  train_acc  test_acc  elapsed_s"


def epoch_logger(log: Callable[[str], None], last_epoch: int, runs_after: int | None) -> Callable[[EpochLog], None]:
    """The epoch line, and with ``runs_after`` (the runs still to come) the time left: this run's
    pace over its remaining epochs and over the whole of each run after it."""
    def line(entry: EpochLog) -> None:
        text = format_epoch(entry)
        if runs_after is not None and (entry.epoch < last_epoch or runs_after):
            per_epoch = entry.elapsed_s / entry.epoch
            left = per_epoch * ((last_epoch - entry.epoch) + runs_after * last_epoch)
            text += f"   about {format_duration(left)} left"
        log(text)
    return line



def format_extension(report: dict) -> str:
    """What SWA or a snapshot ensemble did in a run, and what it gained over the trained model alone."""
    method = report.get("method")
    if method == "swa":
        did, final = f"swa: averaged the weights of {report['weights_averaged']} epoch(s)", "averaged"
    elif method == "snapshot_ensemble":
        epochs = ", ".join(map(str, report.get("snapshot_epochs", [])))
        did, final = f"snapshot ensemble: {report['snapshots']} snapshot(s) (epochs {epochs})", "ensemble"
    else:
        did, final = "extension", "final"
    if "gain" not in report:
        return f"{did}; no final accuracy to compare (the run stopped before its last epoch)"
    return (f"{did}; test accuracy: single model {report['single_model_acc']:.4f}, {final} {report['final_acc']:.4f} "
            f"({100 * report['gain']:+.2f} points)")


def summarize_runs(runs: Sequence[RunResult]) -> dict:
    """The record's summary: accuracy and time-to-target distributions over the runs.

    A run counts as finished, and a finished run as having reached the target, by the rules
    every reader of records uses (:mod:`speedrun.results.run_values`).
    """
    return summarize_run_dicts([r.to_dict() for r in runs])


def summarize_run_dicts(runs: Sequence[dict]) -> dict:
    """:func:`summarize_runs` of runs as records hold them (e.g. runs merged from several records)."""
    finished, reached = finished_runs(runs), reached_runs(runs)
    utils = [r["nvml"]["gpu_util_pct"]["mean"] for r in runs if "gpu_util_pct" in (r.get("nvml") or {})]
    return {
        "runs": len(runs),
        "completed": len(finished),
        "failed": len(runs) - len(finished),
        "reached": len(reached),
        "accuracy": summarize([r["final_test_acc"] for r in finished]).to_dict(),
        "time_to_target": summarize([r["time_to_target_s"] for r in reached]).to_dict(),
        "train_time": summarize([r["train_time_s"] for r in finished]).to_dict(),
        "gpu_util_mean": sum(utils) / len(utils) if utils else None,
    }


def format_summary(summary: dict, target: float) -> str:
    acc, ttt = summary["accuracy"], summary["time_to_target"]
    lines = [f"runs: {summary['runs']}  completed: {summary['completed']}  failed: {summary['failed']}  "
             f"reached {target:.4f}: {summary['reached']}/{summary['runs']}"]
    if acc["n"]:
        if acc["ci95_low"] is None:
            lines.append(f"accuracy: {acc['mean']:.4f} from {acc['n']} run (no interval from fewer than 2 runs)")
        else:
            lines.append(f"accuracy: {acc['mean']:.4f} ± {acc['std']:.4f} (std), "
                         f"95% CI [{acc['ci95_low']:.4f}, {acc['ci95_high']:.4f}] over {acc['n']} runs")
    if ttt["n"]:
        lines.append(f"time to {target:.4f}: mean {ttt['mean']:.2f}s  median {ttt['median']:.2f}s  "
                     f"min {ttt['min']:.2f}s  max {ttt['max']:.2f}s  " + (
                         f"(95% CI [{ttt['ci95_low']:.2f}, {ttt['ci95_high']:.2f}])" if ttt["ci95_low"] is not None
                         else "(one run: no interval)"))
    else:
        lines.append(f"time to {target:.4f}: no run reached the target")
    if summary.get("gpu_util_mean") is not None:
        lines.append(f"GPU utilization (timed part): {summary['gpu_util_mean']:.1f}%")
    return "\n".join(lines)


@dataclass
class PreparedRun:
    """Everything measured runs share: the device, the data on it, the trainer and the schedule."""

    device: torch.device
    compile_model: bool
    target: float
    target_source: str     # where the target came from (given, the recipe's, calibrated on this copy)
    data: Cifar10
    data_sha256: dict      # of the arrays the runs use (after any subset)
    trainer: Trainer
    schedule: Schedule
    lr: torch.Tensor
    momentum: torch.Tensor | None
    data_to_device_s: float
    environment: dict      # read when the run was prepared: the code that runs is the code imported then
    flops: FlopEstimate    # the full budget's arithmetic on this data

    def schedule_record(self) -> dict:
        """The policy and the per-step values the runs read: the device tensors, so a tail that an
        extension rewrote for every run (SWA) is in it; per-run changes (plateau) are in each
        run's epoch log."""
        lr = compact_values(self.lr.tolist())
        return {**self.schedule.describe(), "steps_per_epoch": self.trainer.steps_per_epoch,
                "lr_first": lr[0], "lr_peak": max(lr), "lr_last": lr[-1], "lr": lr,    # as used, SWA's tail included
                "momentum": None if self.momentum is None else compact_values(self.momentum.tolist())}

    def dataset_record(self) -> dict:
        d = self.data
        return {"name": d.source, "origin": str(d.origin), "train_size": len(d.train_labels),
                "test_size": len(d.test_labels), "sha256": self.data_sha256}


def compact_values(values: Sequence[float]) -> list[float]:
    """Float32 values as the shortest decimals that give back the same float32 (``0.1``, not
    ``0.10000000149011612``): exact for the loop, short in the record."""
    return [float(text) for text in np.asarray(values, dtype=np.float32).astype(str)]


def prepare_run(recipe: Recipe, options: HarnessOptions, *, data: Cifar10 | None = None,
                log: Callable[[str], None] = print) -> PreparedRun:
    """Load the data, move it to the device once (timed apart), build the trainer and the schedule."""
    device = pick_device(options.device)
    check_cuda_graph_device(recipe.train.cuda_graph, device)
    if device.type == "cuda":
        # cuDNN picks the fastest convolution algorithm per shape in the warm-up; every GPU run
        # (harness and anchor alike, airbench sets it too) runs with it, and the record says so.
        torch.backends.cudnn.benchmark = True
    driver = NvmlSampler(device).driver_version() if device.type == "cuda" else None
    environment = describe_environment(device, driver)
    compile_model = options.compile if options.compile is not None else device.type == "cuda"
    if device.type == "cpu":
        log("warning: no GPU; training on the CPU is slow (a full ResNet-9 run takes hours). "
            "For a short real run use --epochs, --train-subset and --test-subset.")
    if data is None:
        data = load_cifar10(options.data_dir, download=options.download)
    data = data.subset(options.train_subset, options.test_subset)
    checksums = data.checksums()

    t0 = time.perf_counter()
    device_data = DeviceData.from_cifar(data, device)
    synchronize(device)
    data_to_device_s = time.perf_counter() - t0

    trainer = Trainer(recipe.model, device_data, augment=recipe.augment, optimizer=recipe.optimizer,
                      train=recipe.train, compile_model=compile_model, extensions=recipe.extensions,
                      progress=ProgressLog(log) if device.type == "cpu" else None)
    total_steps = trainer.total_steps
    schedule = recipe.schedule.build(total_steps, trainer.steps_per_epoch)
    if len(schedule) != total_steps:
        raise ValueError(f"the schedule has {len(schedule)} steps but the run has {total_steps} "
                         f"({recipe.train.epochs} epochs of {trainer.steps_per_epoch} steps)")
    if not bool((schedule.lr > 0).any()):
        raise SpeedrunError(f"the schedule ({schedule.name}) has learning rate 0 at every step, so the run would "
                            f"train nothing; check its rates (--max-lr, --base-lr)")
    lr = schedule.lr.to(device=device, dtype=torch.float32)
    momentum = None if schedule.momentum is None else schedule.momentum.to(device=device, dtype=torch.float32)
    choice = recipe.target_for(data.source, options.target)
    if choice.source.startswith("not calibrated"):
        log(f"warning: target {choice.target}: {choice.source}")
    flops = estimate_flops(recipe, train_images=len(data.train_labels), test_images=len(data.test_labels))
    return PreparedRun(device, compile_model, choice.target, choice.source, data, checksums, trainer, schedule, lr,
                       momentum, data_to_device_s, environment, flops)


def rehearse(prepared: PreparedRun, log: Callable[[str], None] = print) -> float:
    """The untimed rehearsal (:meth:`Trainer.rehearse`: compiling where on), logged; returns its seconds."""
    log("rehearsal on random pixels" + (" (compiling)" if prepared.compile_model else "") + ", not timed...")
    seconds = prepared.trainer.rehearse(prepared.lr, prepared.momentum)
    log(f"rehearsal: {seconds:.1f}s")
    return seconds


def base_record(kind: str, recipe: Recipe, options: HarnessOptions, prepared: PreparedRun, *,
                timer_rule: str, runs: Sequence[RunResult], command: Sequence[str] | None) -> dict:
    """The fields every record kind shares; callers add ``runs``, ``summary`` and their own."""
    device = prepared.device
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "created": utc_now(),
        "command": list(command) if command is not None else list(sys.argv),
        "recipe": recipe.name,
        "target": prepared.target,
        "target_source": prepared.target_source,
        "config": {"recipe": recipe.to_dict(), "harness": dataclasses.asdict(options),
                   "compile": prepared.compile_model, "device": str(device)},
        "dataset": prepared.dataset_record(),
        "environment": prepared.environment,
        "timer_rule": timer_rule,
        "flops": prepared.flops.to_dict(),
        "schedule": prepared.schedule_record(),
        "runs_planned": options.runs,
        "nvml": {"available": any(r.nvml.get("available") for r in runs),
                 "reason": next((r.nvml.get("reason") for r in runs if r.nvml.get("reason")), None),
                 "missing": _missing_telemetry(runs)},
    }


def _missing_telemetry(runs: Sequence[RunResult]) -> dict[str, str]:
    """Each telemetry field some run could not read, with the first reason given: the record says
    at its top what its runs lost (a GPU without power readings), not only run by run."""
    missing: dict[str, str] = {}
    for run in runs:
        for name, reason in (run.nvml.get("missing") or {}).items():
            missing.setdefault(name, reason)
    return missing


class RecordWriter:
    """Writes one invocation's record, rewritten atomically after every run.

    Until the last run is in, the record says ``complete: false``, so a command killed at any
    point (a time limit's SIGKILL included) leaves a valid record of every run it finished,
    marked as cut short. The location is checked when the writer is made, before any work:
    an empty ``--out``, a file where a folder should be, a folder named like a record, an
    unwritable folder or an existing record (without ``--force``) are one-line errors. The
    first write never replaces a file (another process may have taken the name since: a fresh
    name is then chosen); later writes replace only this writer's own file. If writing fails
    anyway (a full disk, a folder made read-only meanwhile), the record is kept in a fallback
    folder under the system's temporary folder and the log says where.
    """

    def __init__(self, options: HarnessOptions, recipe: str, kind: str,
                 log: Callable[[str], None] = print) -> None:
        self.log, self.recipe, self.kind, self.force = log, recipe, kind, options.force
        self._written = self._announced = False
        self.path: Path | None = None
        self._explicit = False
        if options.out is None:
            return
        if not str(options.out).strip():
            raise SpeedrunError("--out is empty; give a folder or a .json path, or --no-record for no record")
        out = Path(options.out)
        self._explicit = _names_a_json_file(out)
        check_output(out, flag="--out", force=self.force, folder=not self._explicit)
        self.path = out if self._explicit else default_record_path(out, recipe, kind)

    def write(self, record: dict, *, complete: bool) -> dict:
        """Write ``record`` (with ``complete`` set); returns it with ``_path`` added when written."""
        record = {**record, "complete": complete}
        if self.path is None:
            return record
        try:
            self._write(record)
        except OSError as error:
            self._keep_elsewhere(record, error)
        if complete or not self._announced:
            self.log(f"record{'' if complete else ' (rewritten after every run)'}: {self.path}")
            self._announced = True
        return {**record, "_path": str(self.path)}

    def _write(self, record: dict) -> None:
        assert self.path is not None
        if self._written or (self._explicit and self.force):
            write_record(record, self.path)
        else:
            while True:
                try:
                    write_record(record, self.path, exclusive=True)
                    break
                except FileExistsError:
                    if self._explicit:
                        raise SpeedrunError(f"{self.path} appeared while this command ran; it was left as it "
                                            f"is: choose a new --out path") from None
                    self.path = default_record_path(self.path.parent, self.recipe, self.kind)
        self._written = True

    def _keep_elsewhere(self, record: dict, error: OSError) -> None:
        assert self.path is not None
        fallback = Path(tempfile.gettempdir()) / "speedrun-unsaved-records"
        wanted = self.path
        self.path = default_record_path(fallback, self.recipe, self.kind)
        write_record(record, self.path)
        self._written = True
        self.log(f"warning: could not write {wanted} ({error.strerror or error}); the record is kept at {self.path}")


def train_record(recipe: Recipe, options: HarnessOptions, prepared: PreparedRun, rehearsal_s: float,
                 runs: Sequence[RunResult], command: Sequence[str] | None) -> dict:
    """A train record of ``runs`` (without ``complete``, which its writer sets)."""
    record = base_record("train", recipe, options, prepared, timer_rule=TIMER_RULE, runs=runs, command=command)
    record.update({
        "setup": {"data_to_device_s": prepared.data_to_device_s, "rehearsal_s": rehearsal_s},
        "runs": [r.to_dict() for r in runs],
        "summary": summarize_runs(runs),
    })
    return record


def run_benchmark(recipe: Recipe, options: HarnessOptions, *, data: Cifar10 | None = None,
                  log: Callable[[str], None] = print, command: Sequence[str] | None = None) -> dict:
    """Train ``options.runs`` seeded runs of ``recipe``; return the record (written if ``options.out``).

    The record is rewritten after every run and marked complete after the last (:class:`RecordWriter`).
    """
    writer = RecordWriter(options, recipe.name, "train", log)
    prepared = prepare_run(recipe, options, data=data, log=log)
    rehearsal_s = rehearse(prepared, log)
    runs: list[RunResult] = []
    record: dict = {}
    try:
        for i in range(options.runs):
            seed = options.seed + i
            log(f"run {i + 1}/{options.runs}  seed {seed}  target {prepared.target}")
            log(EPOCH_HEADER)
            eta = prepared.device.type == "cpu"          # a CPU run is long enough to want the time left
            runs.append(prepared.trainer.run(seed, prepared.lr, prepared.momentum, target=prepared.target,
                                             log=epoch_logger(log, prepared.trainer.last_epoch,
                                                              options.runs - i - 1 if eta else None)))
            if runs[-1].extension:
                log(format_extension(runs[-1].extension))
            if runs[-1].status != "ok":
                log(f"run {i + 1} {runs[-1].status}: {runs[-1].error}; recorded as failed, going on")
            record = writer.write(train_record(recipe, options, prepared, rehearsal_s, runs, command),
                                  complete=i + 1 == options.runs)
    except KeyboardInterrupt:         # Ctrl-C or SIGTERM: a run had started; the record says so
        writer.write({**train_record(recipe, options, prepared, rehearsal_s, runs, command), "interrupted": True},
                     complete=False)
        raise
    log(format_summary(record["summary"], prepared.target))
    return record
