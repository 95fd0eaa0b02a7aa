"""Reduce-on-plateau: the controller decides as torch's ReduceLROnPlateau does, and as an extension the
logged metric drives the device lr, so later steps use the reduced rate."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from speedrun.errors import SettingError
from speedrun.extensions.plateau import PLATEAU_METRICS, PlateauConfig, PlateauController
from tests.support.trainers import Probe, constant_schedule, tiny_trainer

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

STEPS_PER_EPOCH = 3


def torch_epoch_lrs(metrics: list[float], base_lr: float, **settings) -> list[float]:
    """The lr PyTorch trains each epoch with, stepping ReduceLROnPlateau after each epoch."""
    return torch_replay(metrics, base_lr, **settings)[0]


def torch_replay(metrics: list[float], base_lr: float, **settings) -> tuple[list[float], list[tuple]]:
    """Per-epoch lrs (plus the one after the last epoch) and PyTorch's public counters
    (best, num_bad_epochs, cooldown_counter) after each step."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = ReduceLROnPlateau(optimizer, **settings)
    lrs, states = [], []
    for metric in metrics:
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(metric)
        states.append((scheduler.best, scheduler.num_bad_epochs, scheduler.cooldown_counter))
    lrs.append(optimizer.param_groups[0]["lr"])  # what the epoch after the last would use
    return lrs, states


def our_epoch_lrs(metrics: list[float], base_lr: float, dtype=torch.float64,
                  **settings) -> tuple[list[float], list[bool], list[tuple]]:
    n_epochs = len(metrics) + 1
    lr = torch.full((n_epochs * STEPS_PER_EPOCH,), base_lr, dtype=dtype)
    controller = PlateauController(lr, STEPS_PER_EPOCH, **settings)
    fired, states = [], []
    for epoch, metric in enumerate(metrics):
        fired.append(controller.step(metric, epoch))
        states.append((controller.best, controller.num_bad_epochs, controller.cooldown_counter))
    per_epoch = lr.view(n_epochs, STEPS_PER_EPOCH)
    assert torch.all(per_epoch == per_epoch[:, :1]), "a reduction must start on an epoch boundary"
    return per_epoch[:, 0].tolist(), fired, states


def noisy(seed: int, n: int, trend: float) -> list[float]:
    rng = random.Random(seed)
    return [1.0 + trend * i + rng.gauss(0, 0.05) for i in range(n)]


SCENARIOS = {
    "improving": ([1.0 / (1 + i) for i in range(30)], dict(patience=2)),
    "plateau": ([0.5] * 40, dict(patience=3)),
    "plateau-patience-0": ([0.5] * 12, dict(patience=0)),
    "improve-then-plateau": ([1.0, 0.8, 0.6, 0.5] + [0.5] * 25, dict(patience=4, factor=0.5)),
    "noisy-flat": (noisy(0, 60, 0.0), dict(patience=3, factor=0.3)),
    "noisy-improving": (noisy(1, 60, -0.01), dict(patience=2)),
    "max-mode": ([0.1, 0.2, 0.3, 0.3, 0.29, 0.31, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3], dict(mode="max", patience=1)),
    "max-noisy": (noisy(2, 50, 0.005), dict(mode="max", patience=2, factor=0.5)),
    "abs-threshold": ([1.0, 0.95, 0.91, 0.88, 0.86, 0.85, 0.845, 0.84, 0.839] * 3,
                      dict(threshold=0.02, threshold_mode="abs", patience=1)),
    "rel-threshold-big": ([1.0 - 0.01 * i for i in range(30)], dict(threshold=0.05, patience=1)),
    "max-abs": ([0.1 + 0.004 * i for i in range(30)], dict(mode="max", threshold=0.01, threshold_mode="abs",
                                                         patience=0)),
    "cooldown": ([0.5] * 40, dict(patience=1, cooldown=3)),
    "cooldown-noisy": (noisy(3, 60, 0.0), dict(patience=1, cooldown=2, factor=0.5)),
    "min-lr": ([0.5] * 40, dict(patience=0, factor=0.5, min_lr=0.01)),
    "eps-stops-tiny-reductions": ([0.5] * 30, dict(patience=0, factor=0.5, eps=1e-3)),
    "negative-metric-rel": ([-1.0, -1.05, -1.06, -1.0605, -1.0606] * 4, dict(patience=1)),
    "nan-metric": ([1.0, math.nan, 0.9, math.nan, math.nan, math.nan, 0.8] * 3, dict(patience=1)),
    "defaults": (noisy(4, 45, 0.0), dict()),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("base_lr", [0.1, 1.0])
def test_matches_reduce_lr_on_plateau(name: str, base_lr: float) -> None:
    metrics, settings = SCENARIOS[name]
    theirs, their_states = torch_replay(metrics, base_lr, **settings)
    ours, fired, our_states = our_epoch_lrs(metrics, base_lr, **settings)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=0)
    assert [repr(s) for s in our_states] == [repr(s) for s in their_states]  # repr: nan == nan
    factor = settings.get("factor", 0.1)
    for epoch, did_fire in enumerate(fired):
        dropped = theirs[epoch + 1] < theirs[epoch]
        if dropped:
            assert did_fire
        elif did_fire:  # fired, but min_lr or eps left the lr alone, as in PyTorch
            lr = theirs[epoch]
            assert lr * factor <= settings.get("min_lr", 0.0) or lr * (1 - factor) <= settings.get("eps", 1e-8)


def test_scenarios_actually_reduce() -> None:
    reduced = [name for name, (metrics, settings) in SCENARIOS.items()
               if torch_epoch_lrs(metrics, 0.1, **settings)[-1] < 0.1]
    assert len(reduced) >= len(SCENARIOS) - 2  # "improving" and perhaps "noisy-improving" need not


def test_float32_device_tensor_matches_closely() -> None:
    metrics, settings = SCENARIOS["cooldown-noisy"]
    theirs = torch_epoch_lrs(metrics, 0.1, **settings)
    ours, _, _ = our_epoch_lrs(metrics, 0.1, dtype=torch.float32, **settings)
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_rewrites_only_the_future_of_a_non_constant_schedule() -> None:
    lr = torch.linspace(1.0, 0.1, 30, dtype=torch.float64)
    original = lr.clone()
    controller = PlateauController(lr, 10, patience=0, factor=0.5)
    assert controller.step(1.0, 0) is False
    assert controller.step(1.0, 1) is True
    assert torch.equal(lr[:20], original[:20])
    torch.testing.assert_close(lr[20:], original[20:] * 0.5)
    assert controller.reductions == [1]


def test_min_lr_clamps_but_the_rule_still_fires() -> None:
    lr = torch.full((10,), 0.01, dtype=torch.float64)
    controller = PlateauController(lr, 2, patience=0, min_lr=0.01)
    controller.step(1.0, 0)
    assert controller.step(1.0, 1) is True
    assert torch.all(lr == 0.01)


def test_reduction_past_the_end_is_harmless() -> None:
    lr = torch.full((6,), 0.1, dtype=torch.float64)
    controller = PlateauController(lr, 3, patience=0)
    controller.step(1.0, 0)
    assert controller.step(1.0, 1) is True
    assert torch.all(lr == 0.1)


def test_describe_is_json() -> None:
    controller = PlateauController(torch.ones(9), 3, mode="max", patience=0)
    controller.step(1.0, 0)
    controller.step(0.5, 1)
    record = controller.describe()
    json.dumps(record)
    assert record["mode"] == "max" and record["metric"] == "test_acc"
    assert record["reduced_after_epochs"] == [1] and record["steps_per_epoch"] == 3


@pytest.mark.parametrize("kwargs, name", [
    (dict(mode="median"), "mode"),
    (dict(threshold_mode="pct"), "threshold_mode"),
    (dict(factor=1.0), "factor"),
    (dict(factor=0.0), "factor"),
    (dict(patience=-1), "patience"),
    (dict(patience=1.5), "patience"),
    (dict(threshold=-0.1), "threshold"),
    (dict(cooldown=-2), "cooldown"),
    (dict(min_lr=-1e-3), "min_lr"),
    (dict(eps=math.nan), "eps"),
])
def test_bad_settings_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} ") as error:
        PlateauController(torch.ones(10), 2, **kwargs)
    assert isinstance(error.value, SettingError) and error.value.setting == name
    if "mode" not in kwargs:           # the config says mode by its metric
        with pytest.raises(SettingError, match=f"^{name} "):
            PlateauConfig(**kwargs)


def test_the_controllers_mode_picks_the_metric_of_its_settings() -> None:
    controller = PlateauController(torch.ones(9), 3, mode="max", patience=0, factor=0.5)
    assert controller.settings == PlateauConfig(metric="test_acc", patience=0, factor=0.5)
    assert controller.settings.mode == "max" and controller.best == -math.inf
    default = PlateauController(torch.ones(9), 3)
    assert default.settings == PlateauConfig() and default.settings.mode == "min" and default.best == math.inf
    assert {mode: metric for metric, mode in PLATEAU_METRICS.items()} == {"min": "train_loss", "max": "test_acc"}
    with pytest.raises(TypeError):
        PlateauController(torch.ones(9), 3, metric="test_acc")     # the controller takes torch's mode instead


@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize("metric", sorted(PLATEAU_METRICS))
def test_is_better_is_torchs_improvement_test(metric: str, threshold_mode: str) -> None:
    config = PlateauConfig(metric=metric, threshold=0.1, threshold_mode=threshold_mode)
    scheduler = ReduceLROnPlateau(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), mode=config.mode,
                                  threshold=0.1, threshold_mode=threshold_mode)
    for best in (-2.0, -0.5, 0.0, 0.5, 2.0):
        for value in (-2.5, -2.0, -1.9, -0.6, -0.5, -0.4, 0.0, 0.05, 0.45, 0.5, 0.56, 1.7, 2.0, 2.3):
            assert config.is_better(value, best) == scheduler._is_better(value, best), (value, best)


def test_bad_construction_and_calls() -> None:
    with pytest.raises(ValueError, match="steps_per_epoch"):
        PlateauController(torch.ones(10), 0)
    with pytest.raises(ValueError, match="schedule_lr"):
        PlateauController(torch.ones(2, 5), 1)
    with pytest.raises(ValueError, match="schedule_lr"):
        PlateauController(torch.ones(10, dtype=torch.int64), 1)
    controller = PlateauController(torch.ones(10), 2)
    with pytest.raises(ValueError, match="epoch"):
        controller.step(1.0, -1)
    controller.step(1.0, 0)
    with pytest.raises(ValueError, match="epoch"):
        controller.step(1.0, 0)


# --- the extension: the logged metric drives the device lr ---------------------------------

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

# An absolute threshold this large (the cap on a real setting) makes every epoch after the first "no improvement".
NEVER_IMPROVES = dict(threshold=1e6, threshold_mode="abs", patience=0)


def test_later_steps_run_at_the_reduced_lr(make_synthetic_cifar10):
    probe = Probe()
    plateau = PlateauConfig(metric="train_loss", factor=0.5, **NEVER_IMPROVES)
    trainer = tiny_trainer(make_synthetic_cifar10(train=128, test=32), epochs=4, extensions=(probe, plateau))
    schedule = constant_schedule(trainer, 0.08)
    result = trainer.run(0, schedule)
    per_epoch = probe.epoch_lrs(trainer.steps_per_epoch)
    # Epoch 1 sets the best loss; epoch 2 does not improve -> reduce from epoch 3; again after 3.
    expected = [0.08, 0.08, 0.04, 0.02]
    for lrs, lr in zip(per_epoch, expected):
        assert lrs == pytest.approx([lr] * trainer.steps_per_epoch)
    assert [e.lr for e in result.epochs] == pytest.approx(expected)
    assert torch.equal(schedule, torch.full_like(schedule, 0.08))   # the caller's schedule is not edited


def test_a_second_run_starts_from_the_unreduced_schedule(make_synthetic_cifar10):
    probe = Probe()
    plateau = PlateauConfig(factor=0.5, **NEVER_IMPROVES)
    trainer = tiny_trainer(make_synthetic_cifar10(train=64, test=32), epochs=3, extensions=(probe, plateau))
    schedule = constant_schedule(trainer, 0.08)
    trainer.run(0, schedule)
    trainer.run(1, schedule)
    assert probe.epoch_lrs(trainer.steps_per_epoch)[0] == pytest.approx([0.08] * trainer.steps_per_epoch)


def test_test_accuracy_mode_skips_epochs_without_evaluation(make_synthetic_cifar10):
    probe = Probe()
    plateau = PlateauConfig(metric="test_acc", factor=0.5, **NEVER_IMPROVES)
    trainer = tiny_trainer(make_synthetic_cifar10(train=64, test=32), epochs=5, eval_every=2,
                           extensions=(probe, plateau))
    trainer.run(0, constant_schedule(trainer, 0.08))
    firsts = [lrs[0] for lrs in probe.epoch_lrs(trainer.steps_per_epoch)]
    # Evaluated after epochs 2 and 4 only: best at 2, no improvement at 4 -> reduced from epoch 5.
    assert firsts == pytest.approx([0.08, 0.08, 0.08, 0.08, 0.04])


def test_the_default_watches_training_loss_in_min_mode():
    config = PlateauConfig()
    assert (config.metric, config.mode) == ("train_loss", "min")
    assert PlateauConfig(metric="test_acc").mode == "max"


@pytest.mark.parametrize("kwargs,match", [(dict(metric="val_loss"), "metric"), (dict(factor=1.5), "factor"),
                                          (dict(patience=-1), "patience")])
def test_bad_settings_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PlateauConfig(**kwargs)
