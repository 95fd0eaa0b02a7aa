"""The whitening stem's bias trains for the first few epochs only, as airbench trains it.

The stem's filters are computed from the data and frozen; its bias starts at the value that
centres the whitened patches and is worth adjusting only early on. airbench94 stops training it
after ``epochs`` epochs (``shape="hold"``: the bias follows the run's schedule, then its lr is 0);
airbench94_muon decays its lr linearly from its initial value to 0 over those epochs
(``shape="linear"``). Either way the bias's group gets its own per-step lr
(:meth:`~speedrun.training.optimizers.ScheduledOptimizer.override_group`), made once on the
device at the start of a run: no step reads the host, nothing recompiles. (airbench also stops
computing the bias's gradient, which saves the first block's backward at full resolution; here
the gradient is still computed and goes unused.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from speedrun.settings import check, setting
from speedrun.training.hooks import RunHooks
from speedrun.training.optimizers import ScheduledOptimizer

if TYPE_CHECKING:
    from speedrun.training.trainer import Trainer

SHAPES = ("hold", "linear")


@dataclass(frozen=True)
class WhiteningBiasSchedule:
    """Train the stem's bias for the first ``epochs`` epochs only, a fraction allowed (module docstring)."""

    epochs: float = setting(3.0, "epochs the stem's bias trains (a fraction ends it inside an epoch, at the step "
                                 "nearest below)", low=0, low_open=True, high=10_000)
    shape: str = setting("hold", "how its rate ends", choices=SHAPES)

    def __post_init__(self) -> None:
        check(self)

    def params_apart(self, trainer: Trainer) -> list[torch.Tensor]:
        """The stem's bias: its group must stay its own (the trainer merges equal groups)."""
        bias = getattr(trainer.model.get_submodule("stem"), "bias", None)
        return [bias] if bias is not None and bias.requires_grad else []

    def make(self, trainer: Trainer, optimizer: ScheduledOptimizer) -> RunHooks:
        stem = trainer.model.get_submodule("stem")
        bias = getattr(stem, "bias", None)
        if bias is None or not bias.requires_grad:
            return RunHooks()               # no trainable stem bias: nothing to schedule
        index = next((i for i, group in enumerate(optimizer.optimizer.param_groups)
                      if any(p is bias for p in group["params"])), None)
        if index is None or len(optimizer.optimizer.param_groups[index]["params"]) != 1:
            raise ValueError("the whitening bias schedule needs the stem's bias in a parameter group of its own")
        schedule = optimizer.lr_schedule * optimizer.lr_scales[index]
        steps = torch.arange(len(schedule), device=schedule.device, dtype=schedule.dtype)
        stop = max(1, int(self.epochs * trainer.steps_per_epoch))
        if self.shape == "hold":
            own = torch.where(steps < stop, schedule, torch.zeros_like(schedule))
        else:
            own = schedule[0] * (1 - steps / stop).clamp(min=0)
        optimizer.override_group(index, own)
        return RunHooks()
