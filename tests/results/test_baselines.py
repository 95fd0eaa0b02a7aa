"""Finding the baseline record of a recipe/dataset/GPU, and the floors a gate derives from it.

The records are real: one tiny CPU run through the harness on synthetic data, then copies
that change only the field a test is about (GPU name, dataset, config, creation time...).
"""
import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.data.cifar10 import SOURCE_JPEG_COPY, SOURCE_OFFICIAL
from speedrun.models.resnet9 import ResNet9Config
from speedrun.recipes import CLASSIC, ScheduleSpec
from speedrun.results.baselines import (
    BASELINE_ACCURACY_TOLERANCE,
    JPEG_COPY_MARGIN,
    Baseline,
    BaselineQuery,
    accuracy_floor,
    device_slug,
    find_baseline,
    gate_target,
    time_ratio,
)
from speedrun.training.config import TrainConfig
from tests.support.records import variant

TINY = CLASSIC.replace(model=ResNet9Config(widths=(8, 16, 16, 32)),
                       train=TrainConfig(epochs=2, batch_size=32, stop_at_target=False))
GPU = "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def gpu_record(tmp_path_factory) -> dict:
    """A real CPU record of TINY, relabelled as if made on ``GPU`` with the JPEG copy."""
    from tests.support.synthetic import make_synthetic

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: threads only add contention on a busy 2-core box
    try:
        record = run_benchmark(TINY, HarnessOptions(runs=2, target=0.2, device="cpu", out=None),
                               data=make_synthetic(train=128, test=32), log=lambda _: None)
    finally:
        torch.set_num_threads(before)
    record["environment"]["gpu_name"] = GPU
    record["dataset"]["name"] = SOURCE_JPEG_COPY
    record["created"] = "2026-01-01T00:00:00+00:00"
    return record


def query(**changes) -> BaselineQuery:
    fields = dict(recipe=TINY, dataset=SOURCE_JPEG_COPY, gpu_name=GPU, target=0.2, train_size=128,
                  test_size=32, compile=False)
    return BaselineQuery(**{**fields, **changes})




def test_the_newest_matching_record_is_the_baseline(tmp_path, gpu_record):
    older = variant(gpu_record, tmp_path / "a" / "older.json")
    newer = variant(gpu_record, tmp_path / "b" / "newer.json", created="2026-02-01T00:00:00+00:00")
    variant(gpu_record, tmp_path / "c" / "other-gpu-newest.json", created="2026-03-01T00:00:00+00:00",
         **{"environment.gpu_name": "NVIDIA A100-SXM4-40GB"})
    search = find_baseline([tmp_path], query())
    assert search.baseline is not None and search.baseline.path == newer
    assert search.baseline.record["created"].startswith("2026-02-01")
    assert any("NVIDIA A100" in m for m in search.near_misses)
    assert str(older) not in "".join(search.near_misses)  # a match that is older is no near miss
    assert "baseline:" in search.explain() and str(newer) in search.explain()


@pytest.mark.parametrize("field,value,reason", [
    ("environment.gpu_name", "NVIDIA A100-SXM4-40GB", "GPU"),
    ("environment.gpu_name", None, "GPU"),                     # a CPU record never gates a GPU
    ("dataset.name", SOURCE_OFFICIAL, "dataset"),
    ("dataset.train_size", 64, "train_size"),
    ("target", 0.3, "target"),
    ("config.compile", True, "compile"),
    ("kind", "lr_find", "kind"),
    ("config.recipe.train.epochs", 3, "config"),               # an --epochs override keeps the name
    ("summary.completed", 0, "no completed run"),
    ("created", "yesterday", "created"),
])
def test_a_record_differing_in_one_field_is_passed_over_with_the_reason(tmp_path, gpu_record, field, value,
                                                                          reason):
    variant(gpu_record, tmp_path / "r.json", **{field: value})
    search = find_baseline([tmp_path], query())
    assert search.baseline is None
    assert len(search.near_misses) == 1 and reason in search.near_misses[0]
    assert "no baseline record matches" in search.explain()


def test_a_schedule_override_is_not_the_recipe(tmp_path, gpu_record):
    """``--schedule`` leaves config.recipe alone; the stored per-step rates give it away."""
    lr = [v * 0.5 for v in gpu_record["schedule"]["lr"]]
    variant(gpu_record, tmp_path / "r.json", **{"schedule.lr": lr})
    search = find_baseline([tmp_path], query())
    assert search.baseline is None and "learning rates" in search.near_misses[0]


def test_the_same_recipe_changed_since_is_not_its_baseline(tmp_path, gpu_record):
    variant(gpu_record, tmp_path / "r.json")
    changed = TINY.replace(schedule=ScheduleSpec("piecewise_linear", knots=((0.0, 0.0), (0.5, 0.2), (1.0, 0.0)),
                                                 knots_as_fraction=True))
    search = find_baseline([tmp_path], query(recipe=changed))
    assert search.baseline is None and "config" in search.near_misses[0]


def test_none_fields_match_anything_but_the_gpu(tmp_path, gpu_record):
    variant(gpu_record, tmp_path / "r.json")
    loose = query(target=None, train_size=None, test_size=None, compile=None)
    assert find_baseline([tmp_path], loose).baseline is not None
    assert find_baseline([tmp_path], dataclasses.replace(loose, gpu_name=None)).baseline is None


def test_a_query_for_a_record_finds_the_older_run_of_the_same_set_up(tmp_path, gpu_record):
    baseline = variant(gpu_record, tmp_path / "baseline.json")
    now = copy.deepcopy(gpu_record)
    assert BaselineQuery.for_record(now, TINY) == query()
    assert find_baseline([tmp_path], BaselineQuery.for_record(now, TINY)).baseline.path == baseline


def test_the_run_being_judged_is_never_its_own_baseline(tmp_path, gpu_record):
    older = variant(gpu_record, tmp_path / "older.json")
    judged = variant(gpu_record, tmp_path / "judged.json", created="2026-02-01T00:00:00+00:00")
    assert find_baseline([tmp_path], query(), exclude=[judged]).baseline.path == older
    assert find_baseline([tmp_path], query(), exclude=[str(judged), older]).baseline is None


def test_other_json_files_and_missing_folders_are_skipped(tmp_path, gpu_record):
    variant(gpu_record, tmp_path / "r.json")
    bench = tmp_path / "benchmarks" / "nvidia-h100" / "Linux-CPython-3.11-64bit" / "0001_base.json"
    bench.parent.mkdir(parents=True)
    bench.write_text(json.dumps({"machine_info": {}, "benchmarks": []}))
    (tmp_path / "cut.json").write_text('{"schema": "speedrun.record", ')
    search = find_baseline([tmp_path, tmp_path / "absent"], query())
    assert search.baseline is not None
    assert len(search.unreadable) == 2
    assert find_baseline([tmp_path / "absent"], query()).baseline is None


def test_a_zone_less_created_time_is_taken_as_utc(tmp_path, gpu_record):
    variant(gpu_record, tmp_path / "aware.json", created="2026-01-01T00:00:00+00:00")
    naive = variant(gpu_record, tmp_path / "naive.json", created="2026-01-01T01:00:00")
    assert find_baseline([tmp_path], query()).baseline.path == naive


def baseline_with(accuracy: dict, time_to_target: dict | None = None) -> Baseline:
    summary = {"accuracy": accuracy, "time_to_target": time_to_target or {"n": 0, "mean": None}}
    return Baseline(Path("b.json"), {"summary": summary, "target": 0.94, "created": "2026-01-01T00:00:00+00:00",
                                     "environment": {}})


def test_official_cifar10_is_held_to_the_recipe_target_whatever_the_baseline():
    low = baseline_with({"n": 5, "mean": 0.90, "std": 0.001})
    floor, why = accuracy_floor(0.94, SOURCE_OFFICIAL, low, runs=5)
    assert floor == 0.94 and "target" in why


def test_the_jpeg_copy_without_a_baseline_gets_the_target_minus_the_margin():
    floor, why = accuracy_floor(0.94, SOURCE_JPEG_COPY, None, runs=5)
    assert floor == pytest.approx(0.94 - JPEG_COPY_MARGIN) and "no baseline" in why
    empty = baseline_with({"n": 0, "mean": None, "std": None})
    assert accuracy_floor(0.94, SOURCE_JPEG_COPY, empty, runs=5)[0] == pytest.approx(0.94 - JPEG_COPY_MARGIN)


def test_the_jpeg_copy_with_a_baseline_is_held_to_its_mean_minus_the_noise_allowance():
    steady = baseline_with({"n": 5, "mean": 0.9300, "std": 0.0010})
    floor, why = accuracy_floor(0.94, SOURCE_JPEG_COPY, steady, runs=5)
    assert floor == pytest.approx(0.9300 - BASELINE_ACCURACY_TOLERANCE) and "baseline mean" in why
    noisy = baseline_with({"n": 2, "mean": 0.9300, "std": 0.0040})   # 3 * 0.004 * sqrt(1/2 + 1/5)
    assert accuracy_floor(0.94, SOURCE_JPEG_COPY, noisy, runs=5)[0] == pytest.approx(
        0.9300 - 3 * 0.004 * math.sqrt(0.7))
    with pytest.raises(ValueError, match="runs"):
        accuracy_floor(0.94, SOURCE_JPEG_COPY, steady, runs=0)


def test_the_gate_target_is_the_recipe_target_on_cifar10_and_lower_on_the_copy():
    assert gate_target(0.94, SOURCE_OFFICIAL) == 0.94
    assert gate_target(0.94, SOURCE_JPEG_COPY) == pytest.approx(0.94 - JPEG_COPY_MARGIN)
    assert accuracy_floor(0.94, SOURCE_JPEG_COPY, None, runs=5)[0] == gate_target(0.94, SOURCE_JPEG_COPY)


def test_time_ratio_is_current_over_baseline_and_none_without_a_time():
    timed = baseline_with({"n": 5, "mean": 0.94, "std": 0.001}, {"n": 4, "mean": 10.0})
    assert time_ratio(11.0, timed) == pytest.approx(1.1)
    assert time_ratio(11.0, baseline_with({"n": 5, "mean": 0.94, "std": 0.001})) is None


@pytest.mark.parametrize("name,slug", [
    ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
    ("NVIDIA A100-SXM4-40GB", "nvidia-a100-sxm4-40gb"),
    ("  Tesla T4 ", "tesla-t4"),
    ("AMD EPYC", "amd-epyc"),
])
def test_device_slug(name, slug):
    assert device_slug(name) == slug


def test_device_slug_refuses_a_name_without_letters_or_digits():
    with pytest.raises(ValueError, match="folder"):
        device_slug("--")
