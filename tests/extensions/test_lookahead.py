"""Lookahead: the pull every k steps by its rule, without a host sync."""
from __future__ import annotations

import pytest
import torch

from speedrun.extensions.lookahead import LookaheadConfig
from speedrun.recipes.fast94 import fast94_recipe
from speedrun.training.optimizers import build_optimizer
from tests.support.fast94 import (
    forbid_host_sync,
    make_trainer,
    tiny,
)


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
