"""Seeded runs through the harness produce a valid, complete record; failures are recorded."""
import json

import pytest

from speedrun.harness import HarnessOptions, run_benchmark
from speedrun.model import ResNet9Config
from speedrun.recipes import CLASSIC
from speedrun.records import read_record
from speedrun.train import TrainConfig

TINY_RECIPE = CLASSIC.replace(model=ResNet9Config(widths=(8, 16, 16, 32)),
                              train=TrainConfig(epochs=2, batch_size=32, eval_every=1))


def test_record_holds_every_run_and_a_summary(tmp_path, make_synthetic_cifar10):
    lines = []
    record = run_benchmark(TINY_RECIPE, HarnessOptions(runs=2, seed=5, target=0.05, out=str(tmp_path)),
                           data=make_synthetic_cifar10(train=128, test=32), log=lines.append)
    stored = read_record(record["_path"])  # schema-checked on the way back in
    assert [r["seed"] for r in stored["runs"]] == [5, 6]
    assert stored["summary"]["runs"] == 2 and stored["summary"]["reached"] == 2
    acc = stored["summary"]["accuracy"]
    assert acc["n"] == 2 and acc["ci95_low"] <= acc["mean"] <= acc["ci95_high"]
    assert stored["dataset"]["name"] == "synthetic" and stored["dataset"]["train_size"] == 128
    assert stored["config"]["recipe"]["name"] == "classic" and stored["timer_rule"]
    assert len(stored["schedule"]["lr"]) == 2 * 4 and stored["schedule"]["steps_per_epoch"] == 4
    assert stored["nvml"]["available"] is False and "no CUDA" in stored["nvml"]["reason"]
    assert stored["environment"]["device"] == "cpu" and stored["environment"]["torch"]
    assert any(line.startswith("epoch") for line in lines) and any("95% CI" in line for line in lines)


def test_a_diverging_run_is_recorded_as_failed_and_the_next_goes_on(tmp_path, make_synthetic_cifar10):
    from speedrun.recipes import ScheduleSpec
    exploding = TINY_RECIPE.replace(schedule=ScheduleSpec("piecewise_linear", {"knots": [(0, 1e30), (8, 1e30)]}))
    record = run_benchmark(exploding, HarnessOptions(runs=2, out=str(tmp_path / "r.json")),
                           data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    assert [r["status"] for r in record["runs"]] == ["diverged", "diverged"]
    assert record["summary"]["failed"] == 2 and record["summary"]["accuracy"]["mean"] is None
    json.loads((tmp_path / "r.json").read_text())  # strict JSON: no NaN anywhere


def test_subsets_and_no_record(make_synthetic_cifar10, tmp_path):
    record = run_benchmark(TINY_RECIPE, HarnessOptions(train_subset=64, test_subset=16, out=None),
                           data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    assert record["dataset"]["train_size"] == 64 and record["dataset"]["test_size"] == 16
    assert "_path" not in record and not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs,match", [(dict(runs=0), "runs"), (dict(target=94), "target")])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HarnessOptions(**kwargs)


def test_environment_and_commit_are_read_before_training(monkeypatch, make_synthetic_cifar10):
    """The record must name the code that ran, i.e. the commit when the run started, not when it ended."""
    import speedrun.harness as harness
    from speedrun.train import Trainer

    events = []
    real_describe, real_run = harness.describe_environment, Trainer.run
    monkeypatch.setattr(harness, "describe_environment",
                        lambda *a, **k: events.append("environment") or real_describe(*a, **k))
    monkeypatch.setattr(Trainer, "run", lambda self, *a, **k: events.append("train") or real_run(self, *a, **k))
    record = run_benchmark(TINY_RECIPE, HarnessOptions(runs=2, out=None),
                           data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    assert events == ["environment", "train", "train"]
    assert record["environment"]["device"] == "cpu"


def test_the_recorded_schedule_is_the_one_the_runs_used(make_synthetic_cifar10):
    """SWA rewrites the schedule's tail; the record must show that tail, not the policy's curve."""
    from speedrun.swa import SWAConfig
    recipe = TINY_RECIPE.replace(extensions=(SWAConfig(epochs=1, swa_lr=0.0123),))
    record = run_benchmark(recipe, HarnessOptions(out=None), data=make_synthetic_cifar10(train=128, test=32),
                           log=lambda _: None)
    lr = record["schedule"]["lr"]
    policy = recipe.schedule.build(len(lr), record["schedule"]["steps_per_epoch"]).lr
    half = len(lr) // 2
    assert lr[:half] == pytest.approx(policy[:half].tolist(), rel=1e-6)
    assert lr[half:] == pytest.approx([0.0123] * half, rel=1e-6)
