"""Accuracy (and, on a GPU, time-to-target) must not regress: real training on real images.

CPU (runs in CI by default): one short run of a quarter-width classic ResNet-9 on a subset of the
offline JPEG-q75 copy must clear a floor measured for it (evidence beside CPU_FLOOR). It is a
tripwire for a broken loop (labels, augmentation, normalization, schedule, BN), not a measure
of a point of accuracy: that is the GPU test's job.

GPU (``-m gpu``, also ``slow``): every recipe in ``RECIPES``, GPU_SEEDS seeded full-budget runs
through ``run_benchmark``, compiled, on the full dataset. The mean accuracy must reach the floor
``speedrun.results.baselines.accuracy_floor`` gives (the recipe's target on the official CIFAR-10; on
the JPEG copy the newest matching baseline record's mean less a noise allowance, or without one
the target less ``JPEG_COPY_MARGIN``), and the mean time-to-target must stay within
``TIME_TOLERANCE`` of that baseline's (skipped, saying why, when there is none). Baselines are
records under ``results/`` of the same recipe config, dataset copy, target, sizes and GPU model;
tests/benchmarks/README.md gives the command that makes one.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.data.cifar10 import SOURCE_JPEG_COPY
from speedrun.data.loading import load_cifar10
from speedrun.recipes import CLASSIC, RECIPES, Recipe
from speedrun.results.baselines import (
    TIME_TOLERANCE,
    BaselineQuery,
    accuracy_floor,
    find_baseline,
    gate_target,
    time_ratio,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "results"

# --- CPU: a short real run with a measured floor ------------------------------------------------
#
# Quarter-width classic ResNet-9 (16/32/64/128 channels; the CLI's --width 0.25), the first 4096
# training and 1000 test images, batch 256 (16 steps an epoch), 4 epochs of the classic one-cycle
# shape, evaluated once at the end with flip TTA, one CPU thread, seed 0.
# Measured on the offline copy (torch 2.13.0+cpu, AMD EPYC, 1 thread), seeds 0-7:
# 0.460 0.455 0.458 0.452 0.491 0.451 0.468 0.457 -> mean 0.462, std 0.013, min 0.451;
# about 20 s of one core each. Chance is 0.10. The floor, 0.40, is 4.7 std under the mean and
# 0.05 under the worst seed: a correct loop clears it, a broken one (shuffled labels, misaligned
# augmentation, wrong normalization, a dead schedule) lands far below.
CPU_TRAIN, CPU_TEST, CPU_EPOCHS, CPU_BATCH, CPU_SEED = 4096, 1000, 4, 256, 0
CPU_FLOOR = 0.40
CPU_RECIPE = CLASSIC.replace(
    model=dataclasses.replace(CLASSIC.model, widths=tuple(w // 4 for w in CLASSIC.model.widths)),
    train=dataclasses.replace(CLASSIC.train, epochs=CPU_EPOCHS, batch_size=CPU_BATCH, eval_every=CPU_EPOCHS,
                              stop_at_target=False),
)

# --- GPU: every recipe, several seeds, against its baseline --------------------------------------
GPU_SEEDS = 5            # seeds 0-4; the floor's noise allowance accounts for this count
RECORDS_ENV = "SPEEDRUN_REGRESSION_RECORDS"   # a folder to keep the GPU runs' records in (default: a temp dir)
GATED_RECIPES = tuple(RECIPES)


@pytest.mark.slow
def test_cpu_short_real_run_clears_its_floor(real_cifar10, one_cpu_thread):
    record = run_benchmark(CPU_RECIPE, HarnessOptions(runs=1, seed=CPU_SEED, device="cpu", compile=False,
                                                      train_subset=CPU_TRAIN, test_subset=CPU_TEST, out=None),
                           data=real_cifar10, log=lambda _: None)
    run = record["runs"][0]
    assert run["status"] == "ok", run["error"]
    assert record["dataset"] == {**record["dataset"], "name": SOURCE_JPEG_COPY, "train_size": CPU_TRAIN,
                                 "test_size": CPU_TEST}
    assert [e["test_acc"] is not None for e in run["epochs"]] == [False] * (CPU_EPOCHS - 1) + [True]
    accuracy = run["final_test_acc"]
    print(f"quarter-width classic, {CPU_TRAIN}/{CPU_TEST} images, {CPU_EPOCHS} epochs, seed {CPU_SEED}: "
          f"accuracy {accuracy:.4f} (floor {CPU_FLOOR}), {run['train_time_s']:.1f}s")
    assert accuracy >= CPU_FLOOR, (f"accuracy {accuracy:.4f} fell below the floor {CPU_FLOOR} (measured seeds "
                                   f"gave 0.451-0.491): the training loop, data or augmentation has regressed")


def gpu(test):
    """Mark a test ``gpu`` and ``slow`` and skip it without CUDA."""
    return pytest.mark.gpu(pytest.mark.slow(test))


def gated(name: str) -> Recipe:
    """The registered recipe trained for its whole budget (``--full-budget``), so the accuracy is
    the budget's and not the first epoch past the target; time-to-target is unchanged by it."""
    recipe = RECIPES[name]
    return recipe.replace(train=dataclasses.replace(recipe.train, stop_at_target=False))


@pytest.fixture(scope="module")
def gpu_record(request, tmp_path_factory):
    """``record(name)``: the record of GPU_SEEDS runs of ``gated(name)``, trained once per module.

    Data: ``$SPEEDRUN_DATA_DIR`` when set (e.g. the official CIFAR-10), else the offline copy.
    """
    if os.environ.get("SPEEDRUN_DATA_DIR"):
        data = load_cifar10(None, download=False)
    else:
        data = request.getfixturevalue("real_cifar10")
    out = os.environ.get(RECORDS_ENV) or str(tmp_path_factory.mktemp("regression-records"))
    records: dict[str, dict] = {}

    def record(name: str) -> dict:
        if name not in records:
            recipe = gated(name)
            target = gate_target(recipe.target, data.source)
            options = HarnessOptions(runs=GPU_SEEDS, seed=0, target=target, device="cuda", compile=True, out=out)
            records[name] = run_benchmark(recipe, options, data=data, log=print,
                                          command=["pytest", "tests/test_accuracy_regression.py", "-m", "gpu"])
        return records[name]

    return record


def baseline_search(name: str, record: dict):
    query = BaselineQuery.for_record(record, gated(name))
    return find_baseline([RESULTS], query, exclude=[record["_path"]] if "_path" in record else [])


@gpu
@pytest.mark.parametrize("recipe_name", GATED_RECIPES)
def test_gpu_mean_accuracy_reaches_the_floor(recipe_name, gpu_record):
    record = gpu_record(recipe_name)
    summary = record["summary"]
    failed = [f"seed {r['seed']}: {r['status']} ({r['error']})" for r in record["runs"] if r["status"] != "ok"]
    assert not failed, f"{recipe_name}: runs failed: {'; '.join(failed)}"
    search = baseline_search(recipe_name, record)
    floor, why = accuracy_floor(RECIPES[recipe_name].target, record["dataset"]["name"], search.baseline,
                                runs=summary["completed"])
    accuracy = summary["accuracy"]
    print(f"{recipe_name}: mean accuracy {accuracy['mean']:.4f} ± {accuracy['std']:.4f} over {accuracy['n']} runs; "
          f"floor {floor:.4f}: {why}\n{search.explain()}")
    assert accuracy["mean"] >= floor, (
        f"{recipe_name}: mean accuracy {accuracy['mean']:.4f} over {accuracy['n']} seeds is below the floor "
        f"{floor:.4f} ({why}); record: {record.get('_path')}\n{search.explain()}")


@gpu
@pytest.mark.parametrize("recipe_name", GATED_RECIPES)
def test_gpu_time_to_target_has_not_regressed(recipe_name, gpu_record):
    record = gpu_record(recipe_name)
    search = baseline_search(recipe_name, record)
    if search.baseline is None:
        pytest.skip(f"{recipe_name}: no time gate, {search.explain()}; make a baseline record as "
                    f"tests/benchmarks/README.md says")
    ttt, target = record["summary"]["time_to_target"], record["target"]
    if not search.baseline.time_to_target.get("n"):
        pytest.skip(f"{recipe_name}: no time gate, no baseline run reached {target}: {search.baseline.path}")
    assert ttt["n"], (f"{recipe_name}: no run reached {target}; the baseline's {search.baseline.time_to_target['n']} "
                      f"did: {search.baseline.path}")
    ratio = time_ratio(ttt["mean"], search.baseline)
    print(f"{recipe_name}: mean time to {target}: {ttt['mean']:.2f}s over {ttt['n']} runs, "
          f"{ratio:.3f}x the baseline's ({search.explain()})")
    assert ratio <= 1 + TIME_TOLERANCE, (
        f"{recipe_name}: mean time to {target} is {ttt['mean']:.2f}s, {100 * (ratio - 1):.1f}% over the baseline's "
        f"{search.baseline.time_to_target['mean']:.2f}s (tolerance {100 * TIME_TOLERANCE:.0f}%); "
        f"{search.explain()}")
