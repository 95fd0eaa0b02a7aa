"""Decoupled weight decay: one step equals its formula, the coupled ablation has the same strength, no host sync."""
from __future__ import annotations

import pytest
import torch

from speedrun.extensions.decoupled_weight_decay import DecoupledWeightDecay
from speedrun.recipes.fast94 import fast94_recipe, fast_recipe_ablations
from speedrun.training.optimizers import build_optimizer
from tests.support.fast94 import (
    forbid_host_sync,
    make_trainer,
    tiny,
)


def one_step(trainer, recipe, eta: float):
    """One optimizer step with random gradients plus the recipe's after-step hooks; returns
    (weights group, shifts group, params before, grads)."""
    trainer.initialize(0)
    groups = trainer.param_groups()
    opt = build_optimizer(groups, trainer.optimizer_config, torch.full((4,), eta))
    hooks = [ext.make(trainer, opt) for ext in recipe.extensions if isinstance(ext, DecoupledWeightDecay)]
    gen = torch.Generator().manual_seed(0)
    before, grads = {}, {}
    for g in groups:
        for p in g.params:
            p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=gen))   # the param's layout, as autograd gives
            before[id(p)], grads[id(p)] = p.detach().clone(), p.grad.clone()
    opt.step()
    for h in hooks:
        for fn in h.after_step:
            fn()
    return groups, before, grads


def test_decoupled_decay_one_step_equals_its_formula(make_synthetic_cifar10):
    recipe = tiny(fast94_recipe(batch_size=32))
    trainer = make_trainer(recipe, make_synthetic_cifar10())
    eta, m, wd = 0.05, recipe.optimizer.momentum, recipe.optimizer.weight_decay
    groups, before, grads = one_step(trainer, recipe, eta)
    for g in groups:
        for p in g.params:
            # first Nesterov step: buffer = g, direction = g + m * g; then p *= 1 - eta * wd
            expected = (before[id(p)] - eta * g.lr_scale * (1 + m) * grads[id(p)]) * (1 - eta * wd)
            assert torch.allclose(p.detach(), expected, rtol=1e-5, atol=1e-6)


def test_coupled_ablation_one_step_equals_l2_of_the_same_strength(make_synthetic_cifar10):
    recipe = tiny(fast_recipe_ablations()["coupled_weight_decay"])
    trainer = make_trainer(recipe, make_synthetic_cifar10())
    eta, m, wd = 0.05, recipe.optimizer.momentum, recipe.optimizer.weight_decay
    groups, before, grads = one_step(trainer, recipe, eta)
    for g in groups:
        l2 = wd * (1 - m) / g.lr_scale
        assert g.weight_decay == pytest.approx(l2)
        for p in g.params:
            p0 = before[id(p)]
            expected = p0 - eta * g.lr_scale * (1 + m) * (grads[id(p)] + l2 * p0)
            assert torch.allclose(p.detach(), expected, rtol=1e-5, atol=1e-6)


def test_decoupled_decay_hook_reads_nothing_back_to_the_host(make_synthetic_cifar10, monkeypatch):
    recipe = tiny(fast94_recipe(batch_size=32))
    trainer = make_trainer(recipe, make_synthetic_cifar10())
    opt = build_optimizer(trainer.param_groups(), trainer.optimizer_config, torch.full((4,), 0.1))
    hooks = DecoupledWeightDecay().make(trainer, opt)
    p = trainer.model.fc.weight
    before = p.detach().clone()
    forbid_host_sync(monkeypatch)
    for fn in hooks.after_step:
        fn()
    monkeypatch.undo()
    assert torch.allclose(p.detach(), before * (1 - 0.1 * recipe.optimizer.weight_decay))
