"""The per-step op count: what it counts, its parts, and the counts the fast recipes are held to."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from speedrun.data.device_data import DeviceData
from speedrun.recipes import get_recipe
from speedrun.training.trainer import Trainer
from tests.support.step_ops import OpCounter, count_step_ops


def ops_of(fn) -> int:
    with OpCounter() as counter:
        fn()
    return counter.total


def test_views_allocations_and_metadata_launch_nothing_and_a_foreach_op_launches_once():
    x, y = torch.randn(4, 4), torch.randn(4, 4)
    assert ops_of(lambda: (x.view(-1), x.t(), x[1:], x.unsqueeze(0), torch.empty(3), x.shape)) == 0
    assert ops_of(lambda: x + 1) == 1
    assert ops_of(lambda: torch._foreach_mul_([x, y], 2.0)) == 1
    assert ops_of(lambda: (x * 2).sum()) == 2


def step_ops(name: str, **train):
    recipe = get_recipe(name)
    model = dataclasses.replace(recipe.model, widths=tuple(max(8, w // 16) for w in recipe.model.widths))
    data = DeviceData.from_cifar(_synthetic(), torch.device("cpu"))
    trainer = Trainer(model, data, augment=recipe.augment, optimizer=recipe.optimizer,
                      train=dataclasses.replace(recipe.train, batch_size=64, **train), compile_model=False,
                      extensions=recipe.extensions)
    schedule = recipe.schedule.build(trainer.total_steps, trainer.steps_per_epoch)
    momentum = None if schedule.momentum is None else schedule.momentum.float()
    return count_step_ops(trainer, schedule.lr.float(), momentum)


def _synthetic():
    from tests.conftest import make_synthetic
    return make_synthetic(train=1024, test=64)


def test_the_parts_add_up_and_name_every_op():
    ops = step_ops("fast94")
    assert ops.outside == pytest.approx(ops.augment + ops.loss + ops.optimizer + ops.hooks)
    assert sum(ops.by_op.values()) == pytest.approx(ops.outside)
    assert ops.graph > 0 and "convolution" not in ops.by_op, "the model's ops are in the step's graph"
    assert "masked_fill_" not in ops.by_op and "cross_entropy" not in str(ops.by_op), "nor the augmentation or loss"
    assert ops.by_op.get("_foreach_lerp_", 0) == pytest.approx(0.2), "lookahead pulls every 5th step"


# Counted on this code (an eager step, 64-image batches; the count does not depend on the size).
# Outside the model, when first counted (before the whitening-bias and Muon groups): classic 63,
# fast94 79.6. With those groups, before the cuts of the step's hyperparameter copies, the
# decoupled decay and the equal groups: classic 65, fast94 93.6, fast94-muon 306 (300 after
# them); Newton-Schulz batched over same-shape filters: fast94-muon 217. Then the augmentation,
# normalization and loss went into the step's graph: outside it, classic 17, fast94 25.6,
# fast94-muon 166 (its optimizer's 153). A change that adds launches fails here.
@pytest.mark.parametrize("name, most", [("classic", 17), ("fast94", 25.6), ("fast94-muon", 166), ("fast94-record", 162.8)])
def test_a_step_launches_no_more_ops_outside_the_model_than_counted(name, most):
    assert step_ops(name).outside <= most + 1e-9


def test_without_training_accuracy_the_step_launches_one_op_less_outside_its_graph():
    assert step_ops("fast94", train_accuracy=False).outside == pytest.approx(step_ops("fast94").outside - 1)
