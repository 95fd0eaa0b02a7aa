"""fast94 at CPU-test size: shared by the model, extension and recipe tests."""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

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


def assert_muon_recipe_rates(recipe, data, *, peak: float, bias: float, head: float, decay: float) -> None:
    """A Muon recipe's rates in airbench's terms: the filters' peak lr, and per image of the batch the
    SGD groups' lr (BN shifts and stem bias ``bias``, head ``head``) and one step's coupled L2 decay."""
    batch = recipe.train.batch_size
    trainer = make_trainer(tiny(recipe, batch_size=32), data)
    lr = recipe.schedule.build(8, 1).lr[0].item()
    filters, shifts, head_group, stem_bias = trainer.param_groups()
    assert math.isclose(lr, peak, rel_tol=1e-6) and filters.orthogonalize
    for group, per_image in ((shifts, bias), (head_group, head), (stem_bias, bias)):
        assert math.isclose(lr * group.lr_scale, per_image * batch, rel_tol=1e-6)
        # coupled L2: one step's decay of the weights, lr * L2, is ``decay`` per image of the batch
        assert math.isclose(lr * group.lr_scale * group.weight_decay, decay * batch, rel_tol=1e-6)


def lr_tensor(trainer, recipe) -> torch.Tensor:
    steps = trainer.total_steps
    return recipe.schedule.build(steps, trainer.steps_per_epoch).lr.float()


def batch_norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def forbid_host_sync(monkeypatch) -> None:
    """From here on, any read of a tensor's value back to the host raises."""
    def forbidden(*_args, **_kwargs):
        raise AssertionError("host sync: a tensor value was read on the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
