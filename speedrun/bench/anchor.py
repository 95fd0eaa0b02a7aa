"""Anchor: our fast recipe against a published speedrun, interleaved on one GPU and one copy of the data.

A time on our harness means little until it stands next to a known result measured the same way
on the same machine. ``run_anchor`` trains N seeded runs of a speedrun recipe (fast94 by
default) and N runs of an *anchor side* (airbench94 from the ``airbench`` package), alternating
between them, and writes one record (kind ``"anchor"``) holding both distributions.

Fairness rules:

* Same data: our loaded :class:`~speedrun.data.cifar10.Cifar10` (after ``--train-subset``/``--test-subset``)
  is written as ``cifar10/train.pt`` and ``cifar10/test.pt`` (each ``{'images': uint8 N x 32 x 32 x 3,
  'labels': int64 N, 'classes': [...]}``, what airbench reads) into a temporary working folder,
  and the anchor runs inside it, offline.
* Interleaving: run pair ``i`` goes ours-then-anchor for even ``i`` and anchor-then-ours for odd
  ``i`` (ABBA), so a drift in clock or temperature over the session hits both sides alike.
* Matched budgets: the anchor trains its whole published budget and evaluates once at the end,
  so our recipe does the same here (``stop_at_target`` off, one evaluation after its last epoch),
  and ``run_time_ratio`` compares the two full runs.
* Same timer: each side's whole run call is timed from outside with CUDA events (``perf_counter``
  on CPU): for speedrun, ``Trainer.run`` (re-initialisation including fast94's whitening,
  training, the evaluations needed); for the anchor, its training call plus one test-time-augmented
  evaluation. Moving data to the device and the warm-ups are excluded for both. A side's
  ``time_to_target_s`` is that call time when its final accuracy reached the target. Speedrun's
  harness rule excludes re-initialisation, which airbench's own timer includes (its whitening),
  so timing the whole call is the symmetric rule; the harness's own figures are kept per run as
  ``harness_time_to_target_s`` and ``harness_train_time_s``.
* How airbench's own timer differs (it prints it only with ``verbose=True``): it sums CUDA-event
  intervals around the whitening init, each epoch's training loop (with its first-epoch data
  preprocessing) and the final TTA evaluation; it leaves out building the net, loading the test
  set from disk onto the GPU (both done inside ``train94``) and setting up the optimizer. Our call
  time includes those few milliseconds. We call it with ``verbose=False``, so its per-epoch
  untimed evaluations do not run at all.

Statistics (``summary`` of the record): per side, mean accuracy and mean time-to-target with
95% Student-t CIs (:func:`speedrun.bench.harness.summarize_runs`); the ratio of our mean time to the
anchor's with a 95% CI by the delta method, ``se(R) = R * sqrt(s_o^2/(n_o m_o^2) + s_a^2/(n_a m_a^2))``
and t on the Welch-Satterthwaite df (:func:`speedrun.results.compare.relative_change`), once over the
runs that reached the target (``time_to_target_ratio``) and once over every completed run's call
time (``run_time_ratio``, which does not drop the runs that fell short); and the accuracy
difference (ours - anchor) with a Welch CI.

The anchor side is injectable (:class:`AnchorSide`), so the whole flow runs in CPU tests against
a small stand-in that really trains.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import io
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch

from speedrun.results.compare import relative_change, welch_difference
from speedrun.data.cifar10 import CIFAR10_CLASSES, Cifar10
from speedrun.bench.environment import pick_device
from speedrun.errors import SpeedrunError
from speedrun.bench.harness import (HarnessOptions, RecordWriter, base_record, format_epoch, prepare_run, summarize_runs,
                              warm_up)
from speedrun.bench.telemetry import NvmlSampler
from speedrun.recipes import Recipe
from speedrun.bench.timing import Stopwatch
from speedrun.training.trainer import RunResult, Trainer

ANCHOR_TIMER_RULE = (
    "each side's whole run call is timed with CUDA events (perf_counter on CPU): for speedrun, "
    "Trainer.run (re-initialisation incl. any data-dependent init, training, the evaluations needed); "
    "for the anchor, its training call plus one TTA evaluation; data loading onto the device and the "
    "warm-ups are excluded for both; time_to_target_s is the call time of a run whose final accuracy "
    "reached the target (speedrun's harness-rule times are kept as harness_time_to_target_s)"
)
DATA_FOLDER = "cifar10"


@dataclass(frozen=True)
class AnchorOutcome:
    """What one anchor run reports; its time is measured by the caller, never by the side."""

    final_test_acc: float
    epochs: float                      # training epochs the run took (for the record's curve entry)
    details: dict = field(default_factory=dict)


class AnchorSide(Protocol):
    """A published training run to compare against. Called with the working folder as cwd."""

    label: str

    def check(self, device: torch.device) -> None:
        """Raise SpeedrunError (one line naming the fix) if it cannot run here; cheap, before any data."""

    def prepare(self, device: torch.device) -> None:
        """Load ``cifar10/train.pt`` and ``cifar10/test.pt`` from the cwd onto the device (not timed)."""

    def warmup(self) -> None:
        """Pay one-time costs (kernel selection, compilation) without a measured run."""

    def run(self, seed: int) -> AnchorOutcome:
        """Train from scratch with ``seed`` and evaluate on the test set (timed by the caller)."""

    def describe(self) -> dict:
        """JSON-ready: package, version, settings, and how its own timer differs from ours."""


# ---------------------------------------------------------------------------------------------
# airbench94


AIRBENCH_VERSION = "0.1.8"


@dataclass
class Airbench94:
    """airbench's ``train94`` (airbench 0.1.8, its published defaults) and its TTA evaluation."""

    label: str = "airbench94"
    tta_level: int = 2                 # mirror + 1-px translations: the level airbench94 reports
    _airbench: Any = field(default=None, repr=False)
    _train: Any = field(default=None, repr=False)
    _test: Any = field(default=None, repr=False)

    def check(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise SpeedrunError(
                f"the airbench94 anchor needs a CUDA GPU (airbench runs only on CUDA) and the device here is "
                f"{device}; run 'speedrun anchor airbench94' on a GPU machine")
        if device.index not in (None, 0):
            raise SpeedrunError(
                f"--device {device}: airbench loads its data onto GPU 0 only; choose the GPU with "
                f"CUDA_VISIBLE_DEVICES and pass --device cuda")
        self._airbench = import_airbench()

    def prepare(self, device: torch.device) -> None:
        ab = self._airbench or import_airbench()
        self._airbench = ab
        self._train = ab.CifarLoader(DATA_FOLDER, train=True, batch_size=1024, aug={"flip": True, "translate": 2},
                                     altflip=True)
        self._test = ab.CifarLoader(DATA_FOLDER, train=False, batch_size=2000)

    def warmup(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self._airbench.warmup94(train_loader=self._train)          # one training step, then returns
            self._airbench.evaluate(self._airbench.make_net94(), self._test, tta_level=self.tta_level)

    def run(self, seed: int) -> AnchorOutcome:
        torch.manual_seed(seed)              # airbench draws everything from the global generator
        model = self._airbench.train94(train_loader=self._train, verbose=False)
        accuracy = self._airbench.evaluate(model, self._test, tta_level=self.tta_level)
        epochs = self._airbench.lib_airbench94.hyp["opt"]["train_epochs"]
        return AnchorOutcome(final_test_acc=float(accuracy), epochs=float(epochs))

    def describe(self) -> dict:
        return {
            "package": "airbench",
            "version": _installed_version("airbench"),
            "call": f"airbench.train94(train_loader, verbose=False) then airbench.evaluate(model, test_loader, "
                    f"tta_level={self.tta_level}), after torch.manual_seed(seed)",
            "settings": "airbench94 published defaults: 9.9 epochs, batch 1024, flip (alternating) + 2-px translate",
            "own_timer": "airbench's own timer (printed with verbose=True) covers the whitening init, each "
                         "epoch's training loop and the final TTA evaluation; it excludes building the net and "
                         "loading the test set onto the GPU inside train94, which the anchor's call time includes",
            "process_effects": "importing airbench sets torch.backends.cudnn.benchmark=True for the whole "
                               "process; it is imported before any run, so both sides run with it",
        }


def import_airbench() -> Any:
    """The airbench module, checked for the pinned version; SpeedrunError names the fix."""
    try:
        airbench = importlib.import_module("airbench")
    except ImportError as e:
        raise SpeedrunError(
            f"the airbench94 anchor needs the airbench package ({e}); install it with "
            f"pip install 'airbench=={AIRBENCH_VERSION}' torchvision, or pip install 'speedrun[anchor]'") from None
    version = _installed_version("airbench")
    if version != AIRBENCH_VERSION:
        raise SpeedrunError(f"found airbench {version}, but the anchor is written against airbench "
                            f"{AIRBENCH_VERSION}; pip install 'airbench=={AIRBENCH_VERSION}'")
    return airbench


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


ANCHORS: dict[str, Callable[[], AnchorSide]] = {"airbench94": Airbench94}


# ---------------------------------------------------------------------------------------------
# Data and working folder


def write_anchor_data(data: Cifar10, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``train.pt`` and ``test.pt`` (airbench's format) under ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, images, labels in (("train.pt", data.train_images, data.train_labels),
                                 ("test.pt", data.test_images, data.test_labels)):
        path = folder / name
        torch.save({"images": torch.from_numpy(images.copy()),
                    "labels": torch.from_numpy(labels.astype("int64")),
                    "classes": list(CIFAR10_CLASSES)}, path)
        paths.append(path)
    return paths[0], paths[1]


@contextlib.contextmanager
def working_directory(path: str | os.PathLike) -> Iterator[None]:
    """Run the block with ``path`` as the cwd (the anchor reads its data relative to it)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


# ---------------------------------------------------------------------------------------------
# The flow


def interleaved_order(runs: int) -> list[tuple[int, bool]]:
    """``(pair index, ours?)`` in execution order: ours first in even pairs, the anchor first in odd ones."""
    order = []
    for i in range(runs):
        first_ours = i % 2 == 0
        order += [(i, first_ours), (i, not first_ours)]
    return order


def run_anchor(recipe: Recipe, side: AnchorSide, options: HarnessOptions, *, data: Cifar10 | None = None,
               log: Callable[[str], None] = print, command: Sequence[str] | None = None,
               workdir: str | os.PathLike | None = None) -> dict:
    """Interleave ``options.runs`` seeded runs of ``recipe`` and of ``side``; return the anchor record.

    The record is written when ``options.out`` is set. ``workdir`` keeps the anchor's data files
    there; by default they go to a temporary folder that is removed afterwards.
    """
    side.check(pick_device(options.device))
    # Matched budgets: the anchor always trains its whole budget and evaluates once at the end,
    # so ours does the same (no early stop, one evaluation after the last epoch).
    recipe = recipe.replace(train=dataclasses.replace(recipe.train, stop_at_target=False,
                                                      eval_every=recipe.train.epochs))
    writer = RecordWriter(options, recipe.name, "anchor", log)
    prepared = prepare_run(recipe, options, data=data, log=log)
    device, trainer, target = prepared.device, prepared.trainer, prepared.target
    data, lr, momentum = prepared.data, prepared.lr, prepared.momentum
    ours_label = f"speedrun {recipe.name}"

    def anchor_record(complete: bool) -> dict:
        """The record of the pairs so far; written after every pair, so a cut-short session keeps them."""
        sides = [_side(ours_label, ours, ours_extra), _side(side.label, theirs, theirs_extra)]
        summary = anchor_summary(sides[0]["runs"], sides[1]["runs"], ours_label, side.label, target=target)
        record = base_record("anchor", recipe, options, prepared, timer_rule=ANCHOR_TIMER_RULE, runs=ours + theirs,
                             command=command)
        record["config"].update({"anchor": {"label": side.label, **side.describe()},
                                 "interleaving": "pair i: ours first when i is even, the anchor first when i is odd"})
        record.update({"setup": setup, "order": order, "runs": [], "sides": sides, "summary": summary})
        return writer.write(record, complete=complete)

    ours: list[RunResult] = []
    theirs: list[RunResult] = []
    ours_extra: list[dict] = []
    theirs_extra: list[dict] = []
    order: list[dict] = []
    record: dict = {}
    with contextlib.ExitStack() as stack:
        folder = Path(workdir) if workdir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="speedrun-anchor-")))
        folder.mkdir(parents=True, exist_ok=True)
        write_anchor_data(data, folder / DATA_FOLDER)
        setup: dict = {"data_to_device_s": prepared.data_to_device_s}
        with working_directory(folder):
            setup["anchor_prepare_s"] = _seconds(lambda: side.prepare(device))
            log(f"warming up {side.label} (not timed)...")
            setup["anchor_warmup_s"] = _seconds(side.warmup)
        setup["compile_warmup_s"] = warm_up(prepared, log)

        for pair, is_ours in interleaved_order(options.runs):
            seed = options.seed + pair
            label = ours_label if is_ours else side.label
            order.append({"side": label, "seed": seed})
            log(f"pair {pair + 1}/{options.runs}: {label}  seed {seed}")
            if is_ours:
                result, extra = _run_ours(trainer, seed, lr, momentum, target, device, log)
                ours.append(result)
                ours_extra.append(extra)
            else:
                with working_directory(folder):
                    result, extra = _run_anchor_side(side, seed, target, device)
                theirs.append(result)
                theirs_extra.append(extra)
            log(_run_line(label, result))
            if len(ours) == len(theirs):              # a pair is done
                record = anchor_record(complete=len(ours) == options.runs)

    for line in format_anchor_summary(record["summary"], record["sides"], target):
        log(line)
    return record


def _seconds(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _run_ours(trainer: Trainer, seed: int, lr: torch.Tensor, momentum: torch.Tensor | None, target: float,
              device: torch.device, log: Callable[[str], None]) -> tuple[RunResult, dict]:
    """One speedrun run, timed around the whole ``Trainer.run`` call."""
    stopwatch = Stopwatch(device)
    stopwatch.start()
    result = trainer.run(seed, lr, momentum, target=target, log=lambda e: log(format_epoch(e)))
    stopwatch.stop()
    call_s = stopwatch.elapsed_s
    extra = {"call_s": call_s, "harness_time_to_target_s": result.time_to_target_s,
             "harness_train_time_s": result.train_time_s}
    result.time_to_target_s = call_s if result.reached_target else None
    result.train_time_s = call_s
    return result, extra


def _run_anchor_side(side: AnchorSide, seed: int, target: float, device: torch.device) -> tuple[RunResult, dict]:
    """One anchor run, timed around its call; an exception becomes a failed run, not a crash."""
    stopwatch, sampler = Stopwatch(device), NvmlSampler(device)
    sampler.start()
    stopwatch.start()
    try:
        outcome = side.run(seed)
    except Exception as e:  # noqa: BLE001 - a third-party run failing is a result to record
        stopwatch.stop()
        sampler.stop()
        return RunResult(seed=seed, status="failed", error=f"{type(e).__name__}: {e}",
                         train_time_s=stopwatch.elapsed_s, nvml=sampler.summary()), {"call_s": stopwatch.elapsed_s}
    stopwatch.stop()
    sampler.stop()
    call_s = stopwatch.elapsed_s
    accuracy = float(outcome.final_test_acc)
    if not math.isfinite(accuracy):
        return RunResult(seed=seed, status="failed", error=f"non-finite accuracy {accuracy}",
                         train_time_s=call_s, nvml=sampler.summary()), {"call_s": call_s}
    reached = accuracy >= target
    result = RunResult(seed=seed, final_test_acc=accuracy, reached_target=reached,
                       time_to_target_s=call_s if reached else None, train_time_s=call_s, nvml=sampler.summary())
    curve = {"epoch": math.ceil(outcome.epochs), "lr": None, "train_loss": None, "train_acc": None,
             "test_acc": accuracy, "elapsed_s": call_s}
    return result, {"call_s": call_s, "epochs_trained": outcome.epochs, "details": dict(outcome.details),
                    "_curve": curve}


def _side(label: str, runs: list[RunResult], extras: list[dict]) -> dict:
    """One side of the record, in the shape the leaderboard reads: {label, runs, summary}."""
    run_dicts = []
    for result, extra in zip(runs, extras):
        d = result.to_dict()
        extra = dict(extra)
        curve = extra.pop("_curve", None)
        if curve is not None:
            d["epochs"] = [curve]
        d.update(extra)
        run_dicts.append(d)
    return {"label": label, "runs": run_dicts, "summary": summarize_runs(runs)}


def _ratio(ours: list[float], theirs: list[float], metric: str) -> dict:
    """Ours / anchor for the mean of ``metric``, with the delta-method CI (None with < 2 values a side)."""
    change = relative_change(theirs, ours)
    base = {"metric": metric, "n_ours": len(ours), "n_anchor": len(theirs),
            "mean_ours": math.fsum(ours) / len(ours) if ours else None,
            "mean_anchor": math.fsum(theirs) / len(theirs) if theirs else None,
            "method": "delta method on the ratio of means, t on Welch-Satterthwaite df "
                      "(speedrun.results.compare.relative_change)"}
    if change is None:
        return {**base, "ratio": None, "ci95_low": None, "ci95_high": None, "df": None}
    return {**base, "ratio": 1 + change.change, "ci95_low": 1 + change.ci95_low, "ci95_high": 1 + change.ci95_high,
            "df": change.df}


def anchor_summary(ours_runs: Sequence[dict], anchor_runs: Sequence[dict], ours_label: str,
                   anchor_label: str, *, target: float) -> dict:
    """Both distributions compared, from the runs' raw values (see the module docstring).

    ``headline`` is what the comparison says in one breath: the ratio of mean run times at
    matched budgets (every completed run counts, none is dropped for missing the target), the
    accuracy difference with its Welch p-value, and the time-to-target ratio at ``target`` when
    both sides' mean accuracy reaches it (otherwise the reason it is not comparable).
    """
    def completed(runs: Sequence[dict]) -> list[dict]:
        return [r for r in runs if r["status"] == "ok" and r.get("final_test_acc") is not None]

    def reached_times(runs: Sequence[dict]) -> list[float]:
        return [float(r["time_to_target_s"]) for r in completed(runs) if r["reached_target"]]

    acc_ours = [float(r["final_test_acc"]) for r in completed(ours_runs)]
    acc_anchor = [float(r["final_test_acc"]) for r in completed(anchor_runs)]
    accuracy = welch_difference(acc_anchor, acc_ours)
    run_time = _ratio([float(r["call_s"]) for r in completed(ours_runs)],
                      [float(r["call_s"]) for r in completed(anchor_runs)], "call_s")
    time_to_target = _ratio(reached_times(ours_runs), reached_times(anchor_runs), "time_to_target_s")
    accuracy_difference = {"ours_minus_anchor": accuracy.diff, "ci95_low": accuracy.ci95_low,
                           "ci95_high": accuracy.ci95_high, "p_value": accuracy.p_value,
                           "method": "Welch t (speedrun.results.compare.welch_difference)"}
    return {
        "runs": len(ours_runs) + len(anchor_runs),
        "completed": len(completed(ours_runs)) + len(completed(anchor_runs)),
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


def _run_line(label: str, result: RunResult) -> str:
    if result.status != "ok":
        return f"  {label} seed {result.seed}: {result.status} ({result.error})"
    return (f"  {label} seed {result.seed}: accuracy {result.final_test_acc:.4f}, "
            f"run call {result.train_time_s:.2f}s")
