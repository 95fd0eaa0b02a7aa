"""Tiny trainers and a probing extension for the extension tests (SWA, snapshots, plateau, LR finder)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from speedrun.data.augment import AugmentConfig
from speedrun.data.device_data import DeviceData
from speedrun.models.resnet9 import ResNet9Config
from speedrun.parameters import OptimizerConfig
from speedrun.training.config import TrainConfig
from speedrun.training.hooks import RunHooks
from speedrun.training.trainer import Trainer

TINY = ResNet9Config(widths=(8, 16, 32, 64))
CPU = torch.device("cpu")


def tiny_trainer(data, *, epochs=3, batch_size=32, extensions=(), **train) -> Trainer:
    """A CPU trainer of the tiny ResNet-9 that trains its whole budget (no stop at target)."""
    train.setdefault("tta", "none")
    return Trainer(TINY, DeviceData.from_cifar(data, CPU), augment=AugmentConfig(), optimizer=OptimizerConfig(),
                   train=TrainConfig(epochs=epochs, batch_size=batch_size, stop_at_target=False, **train),
                   compile_model=False, extensions=extensions)


def constant_schedule(trainer: Trainer, lr: float) -> torch.Tensor:
    return torch.full((trainer.total_steps,), lr)


@dataclass(frozen=True, eq=False)
class Probe:
    """Records what the run did: each step's lr, and copies of the parameters at each epoch's end."""

    step_lrs: list = field(default_factory=list)
    weights: dict = field(default_factory=dict)

    def make(self, trainer, optimizer) -> RunHooks:
        self.step_lrs.clear()
        self.weights.clear()

        def after_step() -> None:
            self.step_lrs.append(float(optimizer.current_lr()))

        def after_epoch(epoch: int) -> None:
            self.weights[epoch] = [t.detach().clone() for t in trainer.model.state_dict().values()]

        return RunHooks(after_step=(after_step,), after_epoch=(after_epoch,))

    def epoch_lrs(self, steps_per_epoch: int) -> list[list[float]]:
        return [self.step_lrs[i:i + steps_per_epoch] for i in range(0, len(self.step_lrs), steps_per_epoch)]


def load_state(model: nn.Module, tensors) -> nn.Module:
    with torch.no_grad():
        for target, value in zip(model.state_dict().values(), tensors):
            target.copy_(value)
    return model
