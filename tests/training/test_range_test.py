"""LR range test: the ramp, the smoothing, the divergence stop, exact restoration, useful suggestions."""
import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speedrun.bench.harness import HarnessOptions
from speedrun.bench.lr_find import format_result, resolve_auto_max_lr, run_lr_find
from speedrun.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from speedrun.data.device_data import DeviceData
from speedrun.parameters import OptimizerConfig, ParamGroup
from speedrun.recipes import CLASSIC
from speedrun.results.records import read_record
from speedrun.training.config import TrainConfig
from speedrun.training.optimizers import build_optimizer
from speedrun.training.range_test import (
    LRFinderConfig,
    LRFinderResult,
    divergence_warning,
    lr_ramp,
    lr_range_test,
    recipe_range_test,
    smooth_losses,
    suggest_lrs,
    valley_lr,
)
from tests.support.trainers import TINY

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

SMALL_RECIPE = CLASSIC.replace(model=TINY, train=TrainConfig(epochs=1, batch_size=32))


def small_net(seed=0):
    """A two-conv BN net: fast enough to train several times in a test, hard enough to need the right lr."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def tensors(data):
    x = torch.from_numpy(data.train_images).permute(0, 3, 1, 2).contiguous()
    return normalize(x, CIFAR10_MEAN, CIFAR10_STD, channels_last=False), torch.from_numpy(data.train_labels)


def batch_losses(model, x, y, batch_size=32, seed=0):
    """A zero-argument function giving the loss of the next shuffled batch, endlessly."""
    gen = torch.Generator().manual_seed(seed)

    def batches():
        while True:
            order = torch.randperm(len(x), generator=gen)
            yield from order[:len(x) - len(x) % batch_size].view(-1, batch_size)

    it = batches()

    def loss():
        idx = next(it)
        return F.cross_entropy(model(x[idx]), y[idx])

    return loss


def sgd(model, lr=0.0):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)


def test_the_ramp_goes_from_start_to_end():
    exp = lr_ramp(LRFinderConfig(start_lr=1e-4, end_lr=1.0, num_steps=5))
    np.testing.assert_allclose(exp, [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    linear = lr_ramp(LRFinderConfig(start_lr=0.1, end_lr=0.5, num_steps=5, ramp="linear"))
    np.testing.assert_allclose(linear, [0.1, 0.2, 0.3, 0.4, 0.5])


def test_smoothing_is_bias_corrected():
    assert smooth_losses([2.0] * 5, 0.98) == pytest.approx([2.0] * 5)   # no pull towards the initial 0
    assert smooth_losses([1.0, 3.0], 0.5) == pytest.approx([1.0, (0.25 + 1.5) / 0.75])


def test_suggestions_on_a_known_curve():
    lrs = np.geomspace(1e-4, 10, 101)
    u = np.log10(lrs)
    loss = 2 - np.tanh(2 * (u + 2)) + 0.5 * np.clip(u, 0, None) ** 2   # steepest at 1e-2, rising after ~1
    s = suggest_lrs(lrs.tolist(), loss.tolist())
    assert s["steepest_lr"] == pytest.approx(1e-2, rel=0.13)
    assert s["min_div_10_lr"] == pytest.approx(s["min_loss_lr"] / 10)
    assert s["one_cycle_max_lr"] == pytest.approx(math.sqrt(s["steepest_lr"] * s["min_div_10_lr"]))
    assert s["cyclic_max_lr"] == s["one_cycle_max_lr"]
    assert s["cyclic_base_lr"] == pytest.approx(s["cyclic_max_lr"] / 4)
    assert s["one_cycle_base_lr"] == pytest.approx(s["one_cycle_max_lr"] / 10)


def test_no_suggestion_when_the_loss_never_falls():
    lrs = np.geomspace(1e-2, 10, 20).tolist()
    assert set(suggest_lrs(lrs, np.linspace(1, 3, 20).tolist()).values()) == {None}


def test_the_test_stops_when_the_loss_diverges(make_synthetic_cifar10):
    x, y = tensors(make_synthetic_cifar10(train=128, test=10))
    model = small_net()
    config = LRFinderConfig(start_lr=1e-3, end_lr=1e6, num_steps=60)
    result = lr_range_test(model, sgd(model), batch_losses(model, x, y), config)
    assert result.stopped_early and len(result.lrs) < config.num_steps
    assert len(result.lrs) == len(result.losses) == len(result.smoothed)
    assert all(math.isfinite(v) for v in result.losses)
    assert result.suggestions["one_cycle_max_lr"] is not None


def test_model_and_optimizer_state_are_restored_exactly(make_synthetic_cifar10):
    x, y = tensors(make_synthetic_cifar10(train=64, test=10))
    model = small_net()
    scheduled = build_optimizer([ParamGroup(list(model.parameters()))], OptimizerConfig(), torch.full((1,), 0.05))
    optimizer = scheduled.optimizer
    loss = batch_losses(model, x, y)()   # one real step first, so there is momentum state to restore
    loss.backward()
    scheduled.step()
    scheduled.zero_grad()
    model_before = copy.deepcopy(model.state_dict())
    optimizer_before = copy.deepcopy(optimizer.state_dict())
    lr_range_test(model, optimizer, batch_losses(model, x, y), LRFinderConfig(start_lr=1e-3, end_lr=1.0, num_steps=8))
    for key, value in model.state_dict().items():
        assert torch.equal(value, model_before[key]), key
    after = optimizer.state_dict()
    for index, state in optimizer_before["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(after["state"][index][key]), torch.as_tensor(value)), key
    assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(0.05)


def test_state_is_restored_even_when_a_step_fails():
    model = small_net()
    before = copy.deepcopy(model.state_dict())
    calls = []

    def loss():
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return model(torch.randn(4, 3, 32, 32)).square().mean()

    with pytest.raises(RuntimeError, match="boom"):
        lr_range_test(model, sgd(model), loss, LRFinderConfig(num_steps=10))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def final_loss(lr, x, y, steps=60):
    model = small_net()
    optimizer = sgd(model, lr)
    next_loss = batch_losses(model, x, y, seed=1)
    for _ in range(steps):
        loss = next_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        value = float(F.cross_entropy(model(x), y))
    return value if math.isfinite(value) else math.inf


def test_the_suggested_rate_trains_better_than_30x_above_or_below(make_synthetic_cifar10):
    x, y = tensors(make_synthetic_cifar10(train=256, test=10))
    model = small_net()
    result = lr_range_test(model, sgd(model), batch_losses(model, x, y),
                           LRFinderConfig(start_lr=1e-4, end_lr=100.0, num_steps=80))
    lr = result.suggestions["one_cycle_max_lr"]
    at = final_loss(lr, x, y)
    assert at < final_loss(lr / 30, x, y)
    assert at < final_loss(lr * 30, x, y)


def test_recipe_range_test_and_auto_max_lr_agree(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=128, test=32)
    config = LRFinderConfig(start_lr=1e-3, end_lr=10.0, num_steps=12)
    result = recipe_range_test(SMALL_RECIPE, DeviceData.from_cifar(data, torch.device("cpu")), seed=3, config=config)
    assert len(result.lrs) == len(result.losses) > 2
    messages = []
    options = HarnessOptions(device="cpu", seed=3, out=None)
    max_lr = resolve_auto_max_lr(SMALL_RECIPE, options, data, config=config, log=messages.append)
    assert max_lr == result.suggestions["one_cycle_max_lr"] > 0
    assert "max_lr" in messages[-1]


def test_lr_find_writes_a_valid_record_with_the_curve_beside_it(make_synthetic_cifar10, tmp_path):
    data = make_synthetic_cifar10(train=128, test=32)
    config = LRFinderConfig(start_lr=1e-3, end_lr=10.0, num_steps=10)
    options = HarnessOptions(device="cpu", out=str(tmp_path / "lr.json"))
    record = run_lr_find(SMALL_RECIPE, options, config, data=data, log=lambda _: None, command=["test"])
    saved = read_record(tmp_path / "lr.json")
    assert saved["kind"] == "lr_find" and saved["runs"] == []
    assert saved["lr_find"]["lrs"] == pytest.approx(list(record["lr_find"]["lrs"]))
    assert set(saved["lr_find"]["suggestions"]) >= {"steepest_lr", "min_div_10_lr", "one_cycle_max_lr",
                                                     "cyclic_base_lr", "cyclic_max_lr"}
    lines = (tmp_path / "lr.csv").read_text().splitlines()
    assert lines[0] == "lr,loss,smoothed" and len(lines) == 1 + len(saved["lr_find"]["lrs"])
    json.dumps(saved)
    with pytest.raises(Exception, match="already exists") as refused:   # never overwritten, checked before training
        run_lr_find(SMALL_RECIPE, options, config, data=data, log=lambda _: None)
    assert "pass --force" in str(refused.value)
    forced = run_lr_find(SMALL_RECIPE, dataclasses.replace(options, force=True), config, data=data,
                         log=lambda _: None)
    assert read_record(tmp_path / "lr.json")["created"] == forced["created"]


@pytest.mark.parametrize("kwargs,match", [(dict(start_lr=0), "start_lr"), (dict(end_lr=1e-5), "end_lr"),
                                          (dict(num_steps=1), "num_steps"), (dict(ramp="cos"), "ramp"),
                                          (dict(beta=1.0), "beta"), (dict(diverge_factor=1.0), "diverge_factor")])
def test_bad_settings_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRFinderConfig(**kwargs)


def test_the_valley_is_the_middle_of_the_longest_fall_even_with_a_bump_in_it():
    lrs = np.geomspace(1e-4, 1e2, 61)
    u = np.log10(lrs)
    loss = np.where(u < 0, 2 - 0.5 * (u + 4), 0.5 + 2 * u ** 2)   # falls from 1e-4 to 1, then rises
    loss[20] += 0.3                                                  # a bump of noise inside the fall
    assert valley_lr(lrs.tolist(), loss.tolist()) == pytest.approx(1e-2, rel=0.3)
    assert suggest_lrs(lrs.tolist(), loss.tolist())["valley_lr"] == valley_lr(lrs.tolist(), loss.tolist())
    assert valley_lr(lrs.tolist(), np.linspace(1, 3, 61).tolist()) is None, "a curve that never falls has none"


def test_a_range_that_never_diverged_is_said_to_understate():
    lrs = tuple(np.geomspace(1e-3, 1.0, 30).tolist())
    losses = tuple(np.linspace(2.3, 1.0, 30).tolist())          # still falling at the end of the range
    config = LRFinderConfig(start_lr=1e-3, end_lr=1.0, num_steps=30)
    never = LRFinderResult(lrs, losses, losses, False, suggest_lrs(lrs, losses, config))
    warning = divergence_warning(never, config)
    assert warning is not None and "never diverged up to lr 1" in warning and "raise --end-lr" in warning
    assert warning in format_result(never, config)
    stopped = LRFinderResult(lrs, losses, losses, True, never.suggestions)
    assert divergence_warning(stopped, config) is None and "never diverged" not in format_result(stopped, config)
