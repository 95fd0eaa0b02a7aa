"""Scenarios on a simulated H200, each run in its own child process by the ``simcuda`` tests.

Why a child: in a CPU-only torch build the CUDA shim (:mod:`tests.support.cuda_shim`) must be
preloaded, and a process that sees a CUDA accelerator must not run the CPU tests.

    python -m tests.support.simcuda_scenarios NAME [ARG...]

prints one line ``SIMCUDA-RESULT <json>`` last; the test asserts on that JSON. Each scenario
reports what it found (devices, dtypes, host reads by site, exceptions with the file:line in
speedrun that raised) and never decides pass or fail itself.
"""
from __future__ import annotations

import os

os.environ.pop("LD_PRELOAD", None)   # loaded in this process already; g++, ptxas and git must not load it

import contextlib
import dataclasses
import json
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily

from speedrun.data.cifar10 import Cifar10
from speedrun.recipes import RECIPES, Recipe, get_recipe
from speedrun.training.trainer import Trainer
from tests.support.nvml_standin import make_pynvml
from tests.support.simcuda import CountedHostReads, engine_runs_cuda, patched, simulated_cuda, simulated_device_data

RESULT_PREFIX = "SIMCUDA-RESULT "
SPEEDRUN_DIR = str(Path(__file__).resolve().parents[2] / "speedrun")
CUDA = torch.device("cuda", 0)


def where(exc: BaseException) -> str:
    """The innermost frame in speedrun that the exception passed through (``path:line``)."""
    ours = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(SPEEDRUN_DIR)]
    return f"{os.path.relpath(ours[-1].filename, os.path.dirname(SPEEDRUN_DIR))}:{ours[-1].lineno}" if ours else "?"


def failure(exc: BaseException, stage: str) -> dict:
    return {"ok": False, "stage": stage, "error": type(exc).__name__, "message": str(exc).split("\n")[0][:300],
            "where": where(exc)}


def zeros_cifar10(train: int = 50_000, test: int = 10_000) -> Cifar10:
    """Full-size CIFAR-10 shapes; the pixels never matter on fake tensors."""
    images = lambda n: np.zeros((n, 32, 32, 3), np.uint8)  # noqa: E731
    return Cifar10(images(train), np.arange(train) % 10, images(test), np.arange(test) % 10, source="zeros",
                   origin="<simulated>")


def devices_of(trainer: Trainer, run: Any) -> dict:
    """Every device and dtype that the model and the optimizer's state live on."""
    state = {str(t.device) for s in run.optimizer.optimizer.state.values() for t in s.values() if torch.is_tensor(t)}
    return {"params": sorted({str(p.device) for p in trainer.model.parameters()}),
            "buffers": sorted({str(b.device) for b in trainer.model.buffers()}),
            "optimizer_state": sorted(state),
            "param_dtypes": sorted({str(p.dtype) for p in trainer.model.parameters()})}


def train_one_config(recipe: Recipe, epochs: int | None = None, train_images: int = 50_000) -> dict:
    """Rehearsal, then every epoch of a (possibly shortened) run with its evaluation, extension
    hooks and the epoch's host read; inside the fake mode every other host read raises.
    ``train_images`` below the full 50,000 keeps every shape and only shortens the epochs."""
    if epochs is not None:
        recipe = recipe.replace(train=dataclasses.replace(recipe.train, epochs=epochs))
    stage = "setup"
    try:
        with simulated_cuda(make_pynvml()), CountedHostReads() as reads:
            trainer = Trainer(recipe.model, simulated_device_data(train_images), augment=recipe.augment, optimizer=recipe.optimizer,
                              train=recipe.train, compile_model=False, extensions=recipe.extensions)
            schedule = recipe.schedule.build(trainer.total_steps, trainer.steps_per_epoch)
            lr = schedule.lr.to(CUDA, torch.float32)
            momentum = None if schedule.momentum is None else schedule.momentum.to(CUDA, torch.float32)
            stage = "rehearse"
            trainer.rehearse(lr, momentum)
            reads.sites.clear()
            stage = "initialize"
            trainer.initialize(0)
            run = trainer.start_run(0, lr, momentum)
            epochs_read = 0
            for epoch in range(1, trainer.last_epoch + 1):
                stage = f"epoch {epoch}"
                trainer.train_epoch(run, epoch)
                accuracy = trainer.end_epoch(run, epoch, evaluate=True)
                trainer.read_epoch(run, epoch, accuracy, 0.0)
                epochs_read += 1
            return {"ok": True, "epochs": epochs_read, "host_reads": dict(reads.sites),
                    "accuracy_device": None if accuracy is None else str(accuracy.device), **devices_of(trainer, run)}
    except Exception as exc:
        return failure(exc, stage)


def scenario_trainer(*names: str) -> dict:
    """Every recipe named (default: all) in bf16 and fp16, one full epoch and the last epoch's end."""
    results = {}
    for name in names or sorted(RECIPES):
        for amp in ("bf16", "fp16"):
            recipe = get_recipe(name)
            recipe = recipe.replace(train=dataclasses.replace(recipe.train, amp_dtype=amp))
            results[f"{name}/{amp}"] = train_one_config(recipe, epochs=1)
    return {"engine_runs_cuda": engine_runs_cuda(), "configs": results}


def scenario_cuda_graph() -> dict:
    """``--cuda-graph``: the step captured once per run (rehearsal, then the run) and replayed
    every step, for each recipe and for the optimizers PyTorch makes capture-aware (Adam)."""
    from tests.support.simcuda import CAPTURE

    classic = get_recipe("classic")
    variants = {name: get_recipe(name) for name in sorted(RECIPES)}
    variants["classic adam"] = classic.replace(optimizer=dataclasses.replace(classic.optimizer, name="adam"),
                                               schedule=_without_momentum_cycle(classic, "adam"))
    results = {}
    for label, recipe in variants.items():
        recipe = recipe.replace(train=dataclasses.replace(recipe.train, cuda_graph=True))
        before = (CAPTURE.captures, CAPTURE.replays)
        outcome = train_one_config(recipe, epochs=1, train_images=4096)
        outcome["captures"] = CAPTURE.captures - before[0]
        outcome["replays"] = CAPTURE.replays - before[1]
        outcome["steps"] = 4096 // recipe.train.batch_size
        results[label] = outcome
    return {"configs": results}


def scenario_extensions() -> dict:
    """classic with each extension and each optimizer, 2 short epochs of full-size batches (so
    every epoch-end hook and the final work run)."""
    from speedrun.extensions.lookahead import LookaheadConfig
    from speedrun.extensions.plateau import PlateauConfig
    from speedrun.extensions.snapshots import SnapshotEnsembleConfig
    from speedrun.extensions.swa import SWAConfig
    from speedrun.parameters import OPTIMIZER_NAMES

    classic = get_recipe("classic")
    short = classic.replace(train=dataclasses.replace(classic.train, epochs=2))
    variants: dict[str, Recipe] = {
        "snapshot-ensemble": short.replace(extensions=(*short.extensions, SnapshotEnsembleConfig(cycle_end_epochs=(1, 2)))),
        "plateau": short.replace(extensions=(*short.extensions, PlateauConfig())),
        "swa": short.replace(extensions=(*short.extensions, SWAConfig(epochs=1, swa_lr=0.01))),
        "lookahead": short.replace(extensions=(*short.extensions, LookaheadConfig())),
    }
    for name in OPTIMIZER_NAMES:
        if name == "muon":
            variants["optimizer muon (fast94-muon)"] = get_recipe("fast94-muon").replace(
                train=dataclasses.replace(get_recipe("fast94-muon").train, epochs=2))
            continue
        optimizer = dataclasses.replace(short.optimizer, name=name)
        variants[f"optimizer {name}"] = short.replace(optimizer=optimizer, schedule=_without_momentum_cycle(short, name))
    return {"engine_runs_cuda": engine_runs_cuda(), "configs": {k: train_one_config(r, train_images=4096) for k, r in variants.items()}}


def _without_momentum_cycle(recipe: Recipe, optimizer: str) -> Any:
    """classic's one-cycle cycles momentum, which only SGD and Adam(W) have."""
    spec = recipe.schedule
    params = dict(getattr(spec, "params", {}) or {})
    if optimizer in ("sgd", "adam", "adamw") or "cycle_momentum" not in params:
        return spec
    return dataclasses.replace(spec, params={**params, "cycle_momentum": False})


def scenario_harness(fail: str = "", *names: str) -> dict:
    """``run_benchmark`` end to end (device pick, data to the device, rehearsal, 2 seeded runs of
    the whole epoch budget with the NVML thread, the record) for the recipes named (default: all),
    on 4,096 training images (full-size batches, shorter epochs); ``fail`` ("" for none) names an
    NVML query that raises."""
    from speedrun.bench.harness import HarnessOptions, run_benchmark
    from speedrun.results.records import read_record

    nvml = make_pynvml(fail=[fail] if fail else [])
    data = zeros_cifar10()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as out:
        for name in names or sorted(RECIPES):
            path = Path(out) / f"{name}.json"
            try:
                with simulated_cuda(nvml), CountedHostReads() as reads:
                    run_benchmark(get_recipe(name), HarnessOptions(runs=2, compile=False, out=str(path), target=0.5,
                                                                         train_subset=4096, test_subset=2000),
                                  data=data, log=lambda line: None)
                record = read_record(path)
                results[name] = {"ok": True, "complete": record["complete"], "runs": len(record["runs"]),
                                 "device": record["environment"]["device"], "gpu": record["environment"]["gpu_name"],
                                 "driver": record["environment"]["driver"],
                                 "nvml": [{k: r["nvml"].get(k) for k in ("available", "reason", "missing")}
                                          for r in record["runs"]],
                                 "record_nvml": record["nvml"],
                                 "epochs": [len(r["epochs"]) for r in record["runs"]], "host_reads": dict(reads.sites)}
            except Exception as exc:
                results[name] = failure(exc, "run_benchmark")
    return {"configs": results, "nvml_init": nvml.state.init_calls, "nvml_shutdown": nvml.state.shutdown_calls,
            "nvml_refcount": nvml.state.refcount}


@contextlib.contextmanager
def planted(fault: str) -> Iterator[None]:
    """A GPU-only bug put into the code for the block (the checkout is not edited)."""
    from speedrun.extensions import decoupled_weight_decay
    from speedrun.training import optimizers

    if fault == "host-read":                       # a host read inside the step
        real_step = optimizers.ScheduledOptimizer.step

        def step(self: Any) -> None:
            if int(self.counter) < 0:
                pass
            real_step(self)
        patch: tuple[Any, str, Callable] = (optimizers.ScheduledOptimizer, "step", step)
    elif fault == "cpu-tensor":                    # a CPU tensor against CUDA parameters in a hook
        real_make = decoupled_weight_decay.DecoupledWeightDecay.make

        def make(self: Any, trainer: Trainer, optimizer: Any) -> Any:
            hooks = real_make(self, trainer, optimizer)

            @torch.no_grad()
            def decay_on_the_host() -> None:
                for group in optimizer.optimizer.param_groups:
                    for p in group["params"]:
                        p.mul_(torch.full(p.shape, 0.999))
            return dataclasses.replace(hooks, after_step=(*hooks.after_step, decay_on_the_host))
        patch = (decoupled_weight_decay.DecoupledWeightDecay, "make", make)
    elif fault == "cpu-lr":                        # the schedule left on the host beside CUDA parameters
        from speedrun.training import trainer as trainer_module
        real_build = trainer_module.build_optimizer

        def build(groups: Any, config: Any, lr: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            with unset_fake_temporarily():
                host_lr = torch.zeros(lr.shape, dtype=lr.dtype)
            return real_build(groups, config, host_lr, *args, **kwargs)
        patch = (trainer_module, "build_optimizer", build)
    elif fault == "not-capturable":                # Adam built without capturable, then captured
        real_init = torch.optim.Adam.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            real_init(self, *args, **{**kwargs, "capturable": False})
        patch = (torch.optim.Adam, "__init__", init)
    elif fault == "none":
        yield
        return
    else:
        raise SystemExit(f"unknown planted fault {fault!r}")
    owner, name, replacement = patch
    with patched({(owner, name): replacement}):
        yield


def scenario_planted(*faults: str) -> dict:
    """fast94 (bf16) with each planted fault, and classic with Adam under ``--cuda-graph``; the
    scenario reports what was raised, and where."""
    classic = get_recipe("classic")
    graphed_adam = classic.replace(optimizer=dataclasses.replace(classic.optimizer, name="adam"),
                                   schedule=_without_momentum_cycle(classic, "adam"),
                                   train=dataclasses.replace(classic.train, cuda_graph=True))
    recipes = {"none": get_recipe("fast94"), "host-read": get_recipe("fast94"), "cpu-tensor": get_recipe("fast94"),
               "cpu-lr": get_recipe("fast94"),
               "graphed-none": graphed_adam, "not-capturable": graphed_adam}
    results = {}
    for fault in faults or recipes:
        with planted(fault.removeprefix("graphed-")):
            results[fault] = train_one_config(recipes[fault], epochs=1, train_images=4096)
    return {"configs": results}


# --- the anchor: speedrun's recipe against airbench94, both on the simulated H200 -------------------


@contextlib.contextmanager
def planted_in_the_anchor(fault: str) -> Iterator[None]:
    """A host read put into speedrun's side of the anchor for the block (the checkout is not edited):
    ``ours`` reads before each of our runs, ``airbench-side`` in speedrun's Airbench94.run."""
    from speedrun.bench import airbench, anchor

    if fault == "none":
        yield
        return
    if fault == "ours":
        real_run_ours = anchor._run_ours

        def run_ours(trainer: Trainer, seed: int, lr: torch.Tensor, *args: Any) -> Any:
            if float(lr[-1]) <= 0:                  # the schedule's last rate, read to the host
                pass
            return real_run_ours(trainer, seed, lr, *args)
        patch: tuple[Any, str, Callable] = (anchor, "_run_ours", run_ours)
    elif fault == "airbench-side":
        real_run = airbench.Airbench94.run

        def run(self: Any, seed: int) -> Any:
            if int(self._test.labels.max()) != 9:   # a check of airbench's labels, read to the host
                pass
            return real_run(self, seed)
        patch = (airbench.Airbench94, "run", run)
    else:
        raise SystemExit(f"unknown planted fault {fault!r}")
    owner, name, replacement = patch
    with patched({(owner, name): replacement}):
        yield


def run_the_anchor(runs: int, fault: str = "none", recipe: str = "fast94") -> dict:
    """``run_anchor`` (speedrun's recipe against airbench94) end to end on 4,096 training and 2,000
    test images of zeros (full-size batches on both sides, ten short epochs), the record read back."""
    from speedrun.bench.airbench import Airbench94
    from speedrun.bench.anchor import run_anchor
    from speedrun.bench.harness import HarnessOptions
    from speedrun.results.records import read_record
    from tests.support.simcuda_session import simulated_session

    log: list[str] = []
    with tempfile.TemporaryDirectory() as out:
        path = Path(out) / "anchor.json"
        options = HarnessOptions(runs=runs, compile=False, out=str(path), train_subset=4096, test_subset=2000)
        try:
            with simulated_session(make_pynvml()) as session, planted_in_the_anchor(fault):
                run_anchor(get_recipe(recipe), Airbench94(), options, data=zeros_cifar10(), log=log.append)
        except Exception as exc:
            return {**failure(exc, "run_anchor"), "log": log[-12:]}
        record = read_record(path)
    sides = [{"label": side["label"], "statuses": [r["status"] for r in side["runs"]],
              "errors": [r.get("error") for r in side["runs"]], "epochs": [len(r.get("epochs") or []) for r in side["runs"]]}
             for side in record["sides"]]
    return {"ok": True, "complete": record["complete"], "kind": record["kind"], "runs_planned": record["runs_planned"],
            "order": [o["side"] for o in record["order"]], "sides": sides, "summary_keys": sorted(record["summary"]),
            "device": record["environment"]["device"], "gpu": record["environment"]["gpu_name"],
            "anchor": record["config"]["anchor"], **session.to_dict()}


def scenario_anchor(runs: str = "2") -> dict:
    """The anchor end to end: ``runs`` interleaved pairs of fast94 and airbench94, the record written."""
    return run_the_anchor(int(runs))


def scenario_anchor_planted(*faults: str) -> dict:
    """One pair of the anchor with each planted host read (see :func:`planted_in_the_anchor`)."""
    return {"configs": {fault: run_the_anchor(1, fault) for fault in faults or ("ours", "airbench-side")}}


SCENARIOS: dict[str, Callable[..., dict]] = {
    "trainer": scenario_trainer, "cuda-graph": scenario_cuda_graph, "extensions": scenario_extensions, "harness": scenario_harness,
    "planted": scenario_planted, "anchor": scenario_anchor, "anchor-planted": scenario_anchor_planted,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SCENARIOS:
        print(f"usage: python -m tests.support.simcuda_scenarios {{{','.join(SCENARIOS)}}} [ARG...]", file=sys.stderr)
        return 2
    result = SCENARIOS[argv[0]](*argv[1:])
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is out; skip the interpreter's teardown, where a failed (simulated) capture can
    # leave torch's engine threads to abort the process.
    os._exit(code)
