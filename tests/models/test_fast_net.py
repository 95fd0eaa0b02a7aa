"""fast94's net: the whitening stem, frozen BN scales and stem, parameter groups."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from speedrun.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from speedrun.models.whitening import patch_whitening
from speedrun.recipes.fast94 import fast94_recipe
from speedrun.recipes.fast94_muon import fast94_muon_recipe
from tests.support.fast94 import (
    batch_norms,
    lr_tensor,
    make_trainer,
    tiny,
)


@pytest.mark.parametrize("method", ["eigh", "svd"])
def test_whitening_filters_give_identity_covariance_on_the_patches(make_synthetic_cifar10, method):
    images = torch.from_numpy(make_synthetic_cifar10(train=96, test=10).train_images).permute(0, 3, 1, 2)
    eps = 1e-9
    weight, bias, eigenvalues = patch_whitening(images, patch=2, eps=eps, chunk=40, method=method)
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


def test_svd_whitening_is_the_same_map_as_eigh_whitening(make_synthetic_cifar10):
    """Filters may differ by sign or by a rotation inside a repeated eigenvalue; the map they
    make, sum_k v_k v_k^T / (lam_k + eps) = (C + eps I)^-1, and the eigenvalues may not."""
    images = torch.from_numpy(make_synthetic_cifar10(train=96, test=10).train_images).permute(0, 3, 1, 2)
    (w_eigh, _, lam_eigh), (w_svd, _, lam_svd) = (patch_whitening(images, 2, 5e-4, method=m) for m in ("eigh", "svd"))
    gram = [w[:12].flatten(1).double().T @ w[:12].flatten(1).double() for w in (w_eigh, w_svd)]
    assert torch.allclose(gram[0], gram[1], rtol=1e-3, atol=1e-3 * float(gram[0].abs().max()))
    assert torch.allclose(lam_eigh, lam_svd, rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError, match="method must be one of eigh, svd"):
        patch_whitening(images, 2, 5e-4, method="qr")


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
    groups = trainer.param_groups()
    _filters, shifts, head, stem_bias = groups
    model = trainer.model
    assert {id(p) for p in shifts.params} == {id(bn.bias) for bn in batch_norms(model)}
    assert [id(p) for p in head.params] == [id(model.fc.weight)]
    assert [id(p) for p in stem_bias.params] == [id(model.stem.bias)]
    assert [g.lr_scale for g in groups] == [1.0, 64.0, 1.0, 1.0]
    grouped = [id(p) for g in groups for p in g.params]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad), "each trained tensor once"
    assert id(model.stem.weight) not in grouped
    assert all(g.weight_decay == 0.0 for g in groups), "decoupled: no L2 in the optimizer"
    assert not any(g.orthogonalize for g in groups), "SGD orthogonalizes nothing"


def test_muon_orthogonalizes_the_filters_only_and_gives_them_no_l2(make_synthetic_cifar10):
    recipe = tiny(fast94_muon_recipe())
    trainer = make_trainer(recipe, make_synthetic_cifar10())
    filters, *sgd_groups = trainer.param_groups()
    assert filters.orthogonalize and filters.weight_decay == 0.0
    assert all(p.ndim == 4 for p in filters.params), "only convolution filters are orthogonalized"
    assert not any(g.orthogonalize for g in sgd_groups)
    m, wd = recipe.optimizer.momentum, recipe.optimizer.weight_decay
    for g in sgd_groups:
        assert math.isclose(g.weight_decay, wd * (1 - m) / g.lr_scale), "coupled L2 of the same strength per group"


def test_head_unit_std_starts_the_head_at_standard_deviation_one(make_synthetic_cifar10):
    recipe = tiny(fast94_muon_recipe())
    trainer = make_trainer(recipe, make_synthetic_cifar10())
    trainer.initialize(0)
    assert math.isclose(trainer.model.fc.weight.std().item(), 1.0, rel_tol=1e-5)
    plain = make_trainer(tiny(fast94_recipe()), make_synthetic_cifar10())
    plain.initialize(0)
    assert plain.model.fc.weight.std().item() < 0.5, "off by default: PyTorch's init"


@pytest.mark.parametrize("activation, module", [("gelu", torch.nn.GELU), ("silu", torch.nn.SiLU), ("relu", torch.nn.ReLU)])
def test_the_activation_is_the_one_named_everywhere(activation, module):
    model = fast94_recipe().model
    net = dataclasses.replace(model, activation=activation).build()
    activations = [m for m in net.modules() if isinstance(m, (torch.nn.GELU, torch.nn.SiLU, torch.nn.ReLU))]
    assert len(activations) == 4 and all(isinstance(m, module) for m in activations)   # the stem's, and one per block


def test_airbench_head_pooling_takes_the_top_left_three_by_three_window():
    """On a map larger than 3x3, airbench's MaxPool2d(3) sees rows and columns 0-2 only; global sees all."""
    config = dataclasses.replace(fast94_recipe().model, widths=(8, 8, 8))
    feature = torch.zeros(2, 8, 4, 4)
    feature[:, :, 3, 3] = 5.0                    # outside the window
    feature[:, :, 1, 2] = 2.0                    # inside it
    window, whole = (dataclasses.replace(config, head_pool=p).build().pool for p in ("window3", "global"))
    assert torch.equal(window(feature).flatten(1), torch.full((2, 8), 2.0))
    assert torch.equal(whole(feature).flatten(1), torch.full((2, 8), 5.0))


def test_on_cifar_images_block3s_map_is_three_by_three_so_both_head_poolings_agree():
    """32 px, the unpadded 2x2 stem (31) and three 2x2 pools (15, 7, 3): MaxPool2d(3) is the global max there.
    On 40 px images (a 4x4 map) the two differ."""
    config = dataclasses.replace(fast94_recipe().model, widths=(8, 8, 8))
    torch.manual_seed(0)
    whole = dataclasses.replace(config, head_pool="global").build().eval()
    window = dataclasses.replace(config, head_pool="window3").build().eval()
    window.load_state_dict(whole.state_dict())

    def block3_map(x):
        for name, module in whole.named_children():
            if name == "pool":
                return x
            x = module(x)

    x = torch.randn(4, 3, 32, 32)
    assert block3_map(x).shape[-2:] == (3, 3)
    assert torch.equal(window(x), whole(x))
    big = torch.randn(4, 3, 40, 40)
    assert block3_map(big).shape[-2:] == (4, 4) and not torch.equal(window(big), whole(big))
