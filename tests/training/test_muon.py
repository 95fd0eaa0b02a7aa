"""Muon: Newton-Schulz orthogonalizes, the update equals a plain reference, and the schedule drives it."""
from __future__ import annotations

import math

import pytest
import torch

from speedrun.parameters import OptimizerConfig, ParamGroup
from speedrun.training.muon import newton_schulz, orthogonalized
from speedrun.training.optimizers import build_optimizer
from tests.support.host_sync import HostSyncCounter


@pytest.mark.parametrize("shape", [(64, 27), (27, 64), (256, 576), (16, 16)])
def test_newton_schulz_brings_every_singular_value_near_one(shape):
    torch.manual_seed(0)
    matrix = torch.randn(*shape)          # a gradient-like matrix: singular values spread over a decade or more
    before = torch.linalg.svdvals(matrix)
    assert float(before.max() / before.min()) > 2
    singular = torch.linalg.svdvals(newton_schulz(matrix, steps=5))
    assert float(singular.min()) > 0.5 and float(singular.max()) < 1.5
    assert torch.allclose(newton_schulz(matrix, 3), newton_schulz(7.0 * matrix, 3), atol=1e-5)   # scale-free


@pytest.mark.parametrize("shape", [(3, 64, 27), (2, 27, 64)])
def test_a_stack_of_matrices_is_orthogonalized_each_on_its_own(shape):
    torch.manual_seed(2)
    stack = torch.randn(*shape) * torch.tensor([1.0, 30.0, 0.1][: shape[0]]).view(-1, 1, 1)
    batched = newton_schulz(stack, 3)
    for matrix, result in zip(stack, batched):
        torch.testing.assert_close(result, newton_schulz(matrix, 3), rtol=1e-5, atol=1e-6)


def test_same_shape_filters_are_orthogonalized_together_and_come_back_in_order():
    torch.manual_seed(3)
    directions = [torch.randn(8, 4, 3, 3), torch.randn(16, 8, 3, 3), torch.randn(8, 4, 3, 3)]
    updates = orthogonalized(directions, 3, torch.float32)
    for d, u in zip(directions, updates):
        assert u.shape == d.shape
        torch.testing.assert_close(u, newton_schulz(d.reshape(len(d), -1), 3).view_as(d), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4,), (2, 2, 2, 2)])
def test_newton_schulz_refuses_what_is_not_a_matrix_or_a_stack_of_them(shape):
    with pytest.raises(ValueError, match="matrix"):
        newton_schulz(torch.ones(*shape), 3)


def reference_muon_step(p, g, buf, *, lr, momentum, nesterov, renormalize, steps):
    """One Muon step written plainly, in float64: the spec the optimizer is checked against."""
    buf = momentum * buf + g
    direction = g + momentum * buf if nesterov else buf
    if renormalize:
        p = p * (math.sqrt(p.shape[0]) / p.norm())
    x = direction.reshape(len(direction), -1)
    x = x / (x.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    a, b, c = 3.4445, -4.7750, 2.0315
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    x = x.T if tall else x
    return p - lr * x.reshape(p.shape), buf


FILTER_SHAPES = [(8, 4, 3, 3), (16, 8, 3, 3), (8, 4, 3, 3)]     # two of one shape: batched together


@pytest.mark.parametrize("nesterov,renormalize,batched", [(True, True, True), (False, True, True),
                                                          (True, False, True), (True, True, False)])
def test_muon_steps_equal_the_plain_reference_for_filters_and_sgd_for_the_rest(nesterov, renormalize, batched):
    torch.manual_seed(1)
    filters = [torch.nn.Parameter(torch.randn(*shape)) for shape in FILTER_SHAPES]
    bias = torch.nn.Parameter(torch.randn(8))
    lr = torch.linspace(0.2, 0.02, 6)
    cfg = OptimizerConfig(name="muon", momentum=0.85, nesterov=nesterov, weight_decay=1e-3, muon_momentum=0.6,
                          newton_schulz_steps=3, muon_renormalize=renormalize, muon_batched=batched)
    opt = build_optimizer([ParamGroup(filters, orthogonalize=True), ParamGroup([bias], lr_scale=3.0)], cfg, lr)
    refs = [(f.detach().double().clone(), torch.zeros(f.shape, dtype=torch.float64)) for f in filters]
    sgd_bias = torch.nn.Parameter(bias.detach().clone())
    sgd = torch.optim.SGD([sgd_bias], lr=1.0, momentum=0.85, nesterov=nesterov, weight_decay=1e-3)
    for t in range(6):
        grads, gb = [torch.randn(*shape) for shape in FILTER_SHAPES], torch.randn(8)
        for f, g in zip(filters, grads):
            f.grad = g.clone()
        bias.grad, sgd_bias.grad = gb.clone(), gb.clone()
        opt.step()
        refs = [reference_muon_step(p, g.double(), buf, lr=float(lr[t]), momentum=0.6, nesterov=nesterov,
                                    renormalize=renormalize, steps=3) for (p, buf), g in zip(refs, grads)]
        sgd.param_groups[0]["lr"] = 3.0 * float(lr[t])
        sgd.step()
        for f, (ref_p, _) in zip(filters, refs):
            torch.testing.assert_close(f.detach().double(), ref_p, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bias, sgd_bias, rtol=1e-5, atol=1e-6)
    if renormalize:        # each filter's norm is held at sqrt(out_channels) before each step
        for f in filters:
            assert float(f.detach().norm()) == pytest.approx(math.sqrt(f.shape[0]), rel=0.3)


def test_a_muon_step_reads_nothing_back_to_the_host():
    filters, bias = torch.nn.Parameter(torch.randn(8, 4, 3, 3)), torch.nn.Parameter(torch.randn(8))
    opt = build_optimizer([ParamGroup([filters], orthogonalize=True), ParamGroup([bias])],
                          OptimizerConfig(name="muon"), torch.full((4,), 0.1))
    with HostSyncCounter() as counter:
        for _ in range(3):
            filters.grad, bias.grad = torch.randn_like(filters), torch.randn_like(bias)
            opt.step()
    assert counter.syncs == [], counter.report()


def test_orthogonalized_groups_need_muon():
    with pytest.raises(ValueError, match="muon"):
        build_optimizer([ParamGroup([torch.nn.Parameter(torch.ones(2, 2))], orthogonalize=True)],
                        OptimizerConfig(name="sgd"), torch.ones(2))


@pytest.mark.parametrize("batched", [True, False])
def test_renormalizing_every_third_step_renormalizes_on_steps_one_four_seven_only(batched):
    torch.manual_seed(4)
    filters = [torch.nn.Parameter(torch.randn(*shape)) for shape in FILTER_SHAPES]
    lr = torch.linspace(0.2, 0.02, 7)
    cfg = OptimizerConfig(name="muon", muon_momentum=0.6, newton_schulz_steps=3, muon_renormalize_every=3,
                          muon_batched=batched)
    opt = build_optimizer([ParamGroup(filters, orthogonalize=True)], cfg, lr)
    refs = [(f.detach().double().clone(), torch.zeros(f.shape, dtype=torch.float64)) for f in filters]
    for t in range(7):
        grads = [torch.randn(*shape) for shape in FILTER_SHAPES]
        for f, g in zip(filters, grads):
            f.grad = g.clone()
        opt.step()
        refs = [reference_muon_step(p, g.double(), buf, lr=float(lr[t]), momentum=0.6, nesterov=True,
                                    renormalize=t % 3 == 0, steps=3) for (p, buf), g in zip(refs, grads)]
        for f, (ref_p, _) in zip(filters, refs):
            torch.testing.assert_close(f.detach().double(), ref_p, rtol=1e-4, atol=1e-5)


def test_renormalize_every_must_be_a_whole_number_of_steps():
    with pytest.raises(ValueError, match="muon_renormalize_every"):
        OptimizerConfig(name="muon", muon_renormalize_every=0)


@pytest.mark.parametrize("batched", [True, False])
def test_fp16_momentum_keeps_the_filters_buffers_in_half_and_tracks_the_float32_run(batched):
    torch.manual_seed(5)
    start = [torch.randn(*shape) for shape in FILTER_SHAPES]
    grads = [[torch.randn(*shape) for shape in FILTER_SHAPES] for _ in range(6)]
    runs = {}
    for fp16 in (False, True):
        filters = [torch.nn.Parameter(s.clone()) for s in start]
        bias = torch.nn.Parameter(torch.zeros(8))
        cfg = OptimizerConfig(name="muon", muon_fp16_momentum=fp16, muon_batched=batched)
        opt = build_optimizer([ParamGroup(filters, orthogonalize=True), ParamGroup([bias])], cfg, torch.full((6,), 0.1))
        with HostSyncCounter() as counter:
            for step in grads:
                for f, g in zip(filters, step):
                    f.grad = g.clone()
                bias.grad = torch.ones(8)
                opt.step()
        assert counter.syncs == [], counter.report()
        buffers = opt.optimizer.state
        assert {buffers[f]["momentum_buffer"].dtype for f in filters} == {torch.float16 if fp16 else torch.float32}
        assert buffers[bias]["momentum_buffer"].dtype == torch.float32, "only the filters' buffers"
        runs[fp16] = [f.detach().clone() for f in filters]
    for full, half in zip(runs[False], runs[True]):
        torch.testing.assert_close(half, full, rtol=0, atol=5e-3 * float(full.abs().max()))
