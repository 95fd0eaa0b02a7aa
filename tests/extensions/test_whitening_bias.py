"""The whitening bias schedule: the stem's bias gets its own lr, held or decayed, then zero; no host sync."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from speedrun.extensions.whitening_bias import WhiteningBiasSchedule
from speedrun.parameters import ParamGroup
from speedrun.recipes.fast94 import fast94_recipe
from speedrun.training.optimizers import build_optimizer
from tests.support.fast94 import forbid_host_sync, make_trainer, tiny


def bias_lrs(trainer, schedule: WhiteningBiasSchedule, lr: torch.Tensor) -> tuple[list[float], list[float], float]:
    """Step an optimizer with zero gradients through ``lr``; return the stem bias group's and the
    weights' lr at every step, and the bias group's lr scale."""
    groups = trainer.param_groups()
    opt = build_optimizer(groups, trainer.optimizer_config, lr)
    schedule.make(trainer, opt)
    index = next(i for i, g in enumerate(groups) if any(p is trainer.model.stem.bias for p in g.params))
    for g in groups:
        for p in g.params:
            p.grad = torch.zeros_like(p)
    bias, weights = [], []
    for _ in range(len(lr)):
        opt.step()
        bias.append(float(opt.optimizer.param_groups[index]["lr"]))
        weights.append(float(opt.optimizer.param_groups[0]["lr"]))
    return bias, weights, groups[index].lr_scale


@pytest.fixture
def trainer(make_synthetic_cifar10):
    """2 steps per epoch (64 images, batch 32)."""
    t = make_trainer(tiny(fast94_recipe()), make_synthetic_cifar10())
    t.initialize(0)
    assert t.steps_per_epoch == 2
    return t


def test_hold_follows_the_schedule_for_its_epochs_then_stops(trainer):
    lr = torch.linspace(1.0, 0.125, 8)
    bias, weights, scale = bias_lrs(trainer, WhiteningBiasSchedule(epochs=3, shape="hold"), lr)
    assert bias[:6] == pytest.approx([v * scale for v in lr[:6].tolist()])
    assert bias[6:] == [0.0, 0.0]
    assert weights == pytest.approx(lr.tolist()), "the other groups keep the run's schedule"


def test_linear_decays_from_the_first_lr_to_zero_over_its_epochs(trainer):
    lr = torch.full((8,), 0.5)
    bias, _, scale = bias_lrs(trainer, WhiteningBiasSchedule(epochs=2, shape="linear"), lr)
    assert bias == pytest.approx([0.5 * scale * f for f in (1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0)])


@pytest.mark.parametrize("epochs, trained_steps", [(1.5, 3), (0.25, 1), (0.75, 1), (2.99, 5)])
def test_a_fraction_of_an_epoch_ends_at_the_step_nearest_below(trainer, epochs, trained_steps):
    lr = torch.full((8,), 0.5)
    bias, _, scale = bias_lrs(trainer, WhiteningBiasSchedule(epochs=epochs, shape="hold"), lr)
    assert bias == pytest.approx([0.5 * scale] * trained_steps + [0.0] * (8 - trained_steps))


def test_the_schedule_steps_without_reading_the_host(trainer, monkeypatch):
    groups = trainer.param_groups()
    opt = build_optimizer(groups, trainer.optimizer_config, torch.linspace(1.0, 0.0, 6))
    WhiteningBiasSchedule(epochs=1).make(trainer, opt)
    for g in groups:
        for p in g.params:
            p.grad = torch.ones_like(p)
    forbid_host_sync(monkeypatch)
    for _ in range(6):
        opt.step()


def test_a_bias_sharing_its_group_is_refused(trainer):
    groups = trainer.param_groups()
    merged = [ParamGroup([*groups[0].params, trainer.model.stem.bias], 1.0, 0.0), *groups[1:-1]]
    opt = build_optimizer(merged, trainer.optimizer_config, torch.ones(4))
    with pytest.raises(ValueError, match="group of its own"):
        WhiteningBiasSchedule().make(trainer, opt)


def test_a_frozen_bias_leaves_every_group_on_the_schedule(make_synthetic_cifar10):
    recipe = tiny(fast94_recipe())
    recipe = recipe.replace(model=dataclasses.replace(recipe.model, whiten_bias_trainable=False))
    t = make_trainer(recipe, make_synthetic_cifar10())
    t.initialize(0)
    groups = t.param_groups()
    opt = build_optimizer(groups, t.optimizer_config, torch.ones(4))
    WhiteningBiasSchedule().make(t, opt)
    opt.step()
    assert [float(g["lr"]) for g in opt.optimizer.param_groups] == pytest.approx([g.lr_scale for g in groups])


@pytest.mark.parametrize("kwargs, match", [({"epochs": 0}, "epochs"), ({"epochs": -0.5}, "epochs"),
                                           ({"shape": "cosine"}, "shape")])
def test_bad_settings_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WhiteningBiasSchedule(**kwargs)
