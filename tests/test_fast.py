"""fast94: whitening stem, frozen BN scales, parameter groups and decoupled decay, lookahead,
alternating flips, learning on small data, and every ablation switch."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speedrun.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from speedrun.extensions.decoupled_weight_decay import DecoupledWeightDecay
from speedrun.extensions.lookahead import LookaheadConfig
from speedrun.models.fast_net import FastNetConfig
from speedrun.models.whitening import patch_whitening
from speedrun.recipes.fast94 import fast94_recipe, fast_recipe_ablations
from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.training.optimizers import build_optimizer
from speedrun.data.device_data import DeviceData
from speedrun.training.trainer import Trainer

CPU = torch.device("cpu")


def tiny(recipe, *, batch_size=32, epochs=1, widths=(8, 16, 16)):
    """The recipe at a CPU-test size: narrow net, small batch, few epochs, evaluated at the end."""
    model = dataclasses.replace(recipe.model, widths=widths, whiten_samples=64)
    train = dataclasses.replace(recipe.train, batch_size=batch_size, epochs=epochs, eval_every=epochs,
                                eval_batch_size=64)
    return recipe.replace(model=model, train=train)


def make_trainer(recipe, data) -> Trainer:
    return Trainer(recipe.model, DeviceData.from_cifar(data, CPU), augment=recipe.augment,
                   optimizer=recipe.optimizer, train=recipe.train, compile_model=False,
                   extensions=recipe.extensions)


def lr_tensor(trainer, recipe) -> torch.Tensor:
    steps = trainer.steps_per_epoch * recipe.train.epochs
    return recipe.schedule.build(steps, trainer.steps_per_epoch).lr.float()


def batch_norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def forbid_host_sync(monkeypatch) -> None:
    """From here on, any read of a tensor's value back to the host raises."""
    def forbidden(*_args, **_kwargs):
        raise AssertionError("host sync: a tensor value was read on the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)


# --------------------------------------------------------------------------------------
# Whitening stem


def test_whitening_filters_give_identity_covariance_on_the_patches(make_synthetic_cifar10):
    images = torch.from_numpy(make_synthetic_cifar10(train=96, test=10).train_images).permute(0, 3, 1, 2)
    eps = 1e-9
    weight, bias, eigenvalues = patch_whitening(images, patch=2, eps=eps, chunk=40)
    assert weight.shape == (24, 3, 2, 2) and bias.shape == (24,)
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:]), "largest eigenvalue first"

    out = F.conv2d(normalize(images, CIFAR10_MEAN, CIFAR10_STD, channels_last=False).double(),
                   weight.double(), bias.double())
    rows = out.permute(0, 2, 3, 1).reshape(-1, 24)
    first, second = rows[:, :12], rows[:, 12:]
    assert torch.allclose(second, -first, atol=1e-5), "the second half are the negated filters"
    assert first.mean(0).abs().max() < 1e-4, "the bias centres the outputs"
    covariance = first.T @ first / len(first)
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=2e-3)


def test_whitening_eps_damps_each_direction_by_lam_over_lam_plus_eps(make_synthetic_cifar10):
    images = torch.from_numpy(make_synthetic_cifar10(train=64, test=10).train_images).permute(0, 3, 1, 2)
    eps = 0.05
    weight, bias, lam = patch_whitening(images, patch=2, eps=eps)
    out = F.conv2d(normalize(images, CIFAR10_MEAN, CIFAR10_STD, channels_last=False).double(),
                   weight[:12].double(), bias[:12].double())
    rows = out.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = rows.T @ rows / len(rows)
    expected = torch.diag(lam / (lam + eps))
    assert torch.allclose(covariance, expected, atol=2e-3)


def test_initialize_puts_per_seed_whitening_into_a_frozen_stem(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=128, test=32)
    images = torch.from_numpy(data.train_images).permute(0, 3, 1, 2).contiguous()
    recipe = tiny(fast94_recipe(batch_size=32))
    trainer = make_trainer(recipe.replace(model=dataclasses.replace(recipe.model, whiten_samples=1000)), data)
    trainer.initialize(0)
    expected, _, _ = patch_whitening(images, 2, recipe.model.whiten_eps)
    assert torch.allclose(trainer.model.stem.weight, expected, atol=1e-6), "all images sampled: the exact filters"
    assert not trainer.model.stem.weight.requires_grad

    sampled = make_trainer(recipe.replace(model=dataclasses.replace(recipe.model, whiten_samples=40)), data)
    stems = {}
    for seed in (0, 1, 0):
        sampled.initialize(seed)
        stems.setdefault(seed, []).append(sampled.model.stem.weight.detach().clone())
    assert torch.equal(stems[0][0], stems[0][1]), "the same seed gives the same stem"
    assert not torch.allclose(stems[0][0], stems[1][0]), "another seed samples other images"


# --------------------------------------------------------------------------------------
# Frozen BN scales, parameter groups, decoupled decay


def test_frozen_bn_scales_and_stem_stay_frozen_through_training(make_synthetic_cifar10):
    recipe = tiny(fast94_recipe(batch_size=32), epochs=2)
    trainer = make_trainer(recipe, make_synthetic_cifar10(train=64, test=32))
    trainer.initialize(3)
    stem_before = trainer.model.stem.weight.detach().clone()
    shifts_before = [bn.bias.detach().clone() for bn in batch_norms(trainer.model)]
    result = trainer.run(3, lr_tensor(trainer, recipe))
    assert result.status == "ok"
    for bn, shift_before in zip(batch_norms(trainer.model), shifts_before):
        assert not bn.weight.requires_grad
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)), "a frozen BN scale stays exactly 1"
        assert not torch.equal(bn.bias, shift_before), "the BN shift trains"
    assert torch.equal(trainer.model.stem.weight, stem_before)


def test_param_groups_put_bn_shifts_apart_and_leave_out_frozen_tensors(make_synthetic_cifar10):
    recipe = tiny(fast94_recipe(batch_size=32))
    trainer = make_trainer(recipe, make_synthetic_cifar10())
    weights, shifts = trainer.param_groups()
    model = trainer.model
    assert {id(p) for p in shifts.params} == {id(bn.bias) for bn in batch_norms(model)}
    assert shifts.lr_scale == 64.0 and weights.lr_scale == 1.0
    grouped = [id(p) for g in (weights, shifts) for p in g.params]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad), "each trained tensor once"
    assert id(model.stem.weight) not in grouped
    assert weights.weight_decay == 0.0 and shifts.weight_decay == 0.0, "decoupled: no L2 in the optimizer"


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


# --------------------------------------------------------------------------------------
# Lookahead


def test_lookahead_pulls_every_k_steps_by_its_rule_without_host_sync(make_synthetic_cifar10, monkeypatch):
    recipe = tiny(fast94_recipe(batch_size=32), epochs=3)        # 64 images / 32 = 2 steps an epoch: T = 6
    trainer = make_trainer(recipe, make_synthetic_cifar10(train=64, test=32))
    trainer.initialize(0)
    config = LookaheadConfig(every=2, decay=0.8, ramp_power=1.0)
    opt = build_optimizer(trainer.param_groups(), trainer.optimizer_config, torch.full((6,), 0.1))
    hooks = config.make(trainer, opt)
    model = trainer.model
    tracked = [p for p in model.parameters() if p.requires_grad] + [b for b in model.buffers() if b.is_floating_point()]
    slow = [t.detach().clone() for t in tracked]
    gen = torch.Generator().manual_seed(1)
    forbid_host_sync(monkeypatch)
    with torch.no_grad():
        for n in range(1, 6):
            for t in tracked:                         # stand-in for an optimizer step
                t.add_(torch.randn(t.shape, generator=gen))
            fast = [t.detach().clone() for t in tracked]
            (after_step,) = hooks.after_step
            after_step()
            if n % 2 == 0:
                d = 0.8 * n / 6
                slow = [d * s + (1 - d) * f for s, f in zip(slow, fast)]
                for t, s in zip(tracked, slow):
                    assert torch.allclose(t, s, atol=1e-6), f"step {n}: fast weights pulled to the slow ones"
            else:
                for t, f in zip(tracked, fast):
                    assert torch.equal(t, f), f"step {n}: no pull between updates"
        (after_epoch,) = hooks.after_epoch
        fast = [t.detach().clone() for t in tracked]
        after_epoch(3)                                # the last epoch: one more pull for step 5
        d = 0.8 * 5 / 6
        for t, s, f in zip(tracked, slow, fast):
            assert torch.allclose(t, d * s + (1 - d) * f, atol=1e-6)
    monkeypatch.undo()
    assert LookaheadConfig().decay_at(3, 6) == pytest.approx(0.95 ** 5 * 0.5 ** 3)
    assert LookaheadConfig(enabled=False).make(trainer, opt).after_step == ()


# --------------------------------------------------------------------------------------
# Through the Trainer: alternating flips, learning


def test_alternating_flips_flip_each_image_every_other_epoch(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=64, test=32)
    images = data.train_images.copy()
    for i in range(len(images)):
        images[i, :, :, 0] = 3 * i                   # channel 0: the image's id (survives flips and shifts)
        images[i, :, :16, 1], images[i, :, 16:, 1] = 255, 0   # channel 1: bright left half
    data = dataclasses.replace(data, train_images=images)
    recipe = tiny(fast94_recipe(batch_size=32), epochs=4)
    trainer = make_trainer(recipe, data)
    seen: dict[int, list[bool]] = {}

    def record(module, inputs):
        if not module.training:
            return
        x = inputs[0]
        ids = ((x[:, 0, 0, 0] * CIFAR10_STD[0] + CIFAR10_MEAN[0]) * 255 / 3).round().long()
        flipped = x[:, 1, :, 0].mean(1) < x[:, 1, :, -1].mean(1)
        for i, f in zip(ids.tolist(), flipped.tolist()):
            seen.setdefault(i, []).append(f)

    trainer.model.register_forward_pre_hook(record)
    trainer.run(0, lr_tensor(trainer, recipe))
    assert sorted(seen) == list(range(64)) and all(len(v) == 4 for v in seen.values())
    for flips in seen.values():
        assert flips[1] != flips[0] and flips[2] == flips[0] and flips[3] != flips[0]
    firsts = [v[0] for v in seen.values()]
    assert 0 < sum(firsts) < 64, "the first epoch's flips are random"


def test_fast94_learns_a_small_problem_through_the_harness(make_synthetic_cifar10):
    recipe = tiny(fast94_recipe(batch_size=32), epochs=4, widths=(16, 32, 32))
    record = run_benchmark(recipe, HarnessOptions(device="cpu", compile=False, out=None, target=0.99),
                           data=make_synthetic_cifar10(train=256, test=64), log=lambda _: None, command=[])
    (run,) = record["runs"]
    assert run["status"] == "ok"
    assert run["final_test_acc"] >= 0.5, run["final_test_acc"]   # chance 0.1; seeds 0-2 gave 0.66-0.81


def test_fast94_beats_chance_on_real_cifar10_subset(real_cifar10):
    recipe = tiny(fast94_recipe(batch_size=100), epochs=4, widths=(16, 32, 32))
    recipe = recipe.replace(train=dataclasses.replace(recipe.train, tta="none"))
    record = run_benchmark(recipe, HarnessOptions(device="cpu", compile=False, out=None, train_subset=1000,
                                                  test_subset=500),
                           data=real_cifar10, log=lambda _: None, command=[])
    (run,) = record["runs"]
    # chance 0.1 (sd 0.013 on 500 images); seeds 0-2 gave 0.34-0.37 after these 40 steps
    assert run["final_test_acc"] >= 0.25, run["final_test_acc"]


# --------------------------------------------------------------------------------------
# Ablations


ABLATIONS = fast_recipe_ablations()


def test_ablations_each_change_the_recipe_and_are_named():
    base = fast94_recipe()
    assert len({r.name for r in ABLATIONS.values()}) == len(ABLATIONS)
    for key, recipe in ABLATIONS.items():
        assert recipe.name == f"fast94-{key}"
        assert recipe.replace(name=base.name, description=base.description) != base, key


@pytest.mark.parametrize("key", sorted(ABLATIONS))
def test_every_ablation_builds_and_trains_a_step(key, make_synthetic_cifar10):
    recipe = tiny(ABLATIONS[key])
    trainer = make_trainer(recipe, make_synthetic_cifar10(train=32, test=32))
    result = trainer.run(0, lr_tensor(trainer, recipe))
    assert result.status == "ok" and result.final_test_acc is not None


def test_bad_config_values_name_the_parameter():
    with pytest.raises(ValueError, match="widths"):
        FastNetConfig(widths=(64, 256))
    with pytest.raises(ValueError, match="activation"):
        FastNetConfig(activation="swish")
    with pytest.raises(ValueError, match="every"):
        LookaheadConfig(every=0)
    with pytest.raises(ValueError, match="batch_size"):
        fast94_recipe(batch_size=0)
