"""Decoupled weight decay (Loshchilov & Hutter) as a trainer extension: a shrink after every step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from speedrun.training.hooks import RunHooks
from speedrun.training.optimizers import ScheduledOptimizer

if TYPE_CHECKING:
    from speedrun.training.trainer import Trainer


@dataclass(frozen=True)
class DecoupledWeightDecay:
    """Carries out decoupled weight decay when the model config asks for it (``decoupled_weight_decay``).

    After every optimizer step: ``p <- p * (1 - eta_t * wd)`` for every tensor the optimizer
    trains, where ``eta_t`` is the schedule's lr of that step (each group's device lr divided
    by its ``lr_scale``) and ``wd`` is ``OptimizerConfig.weight_decay``. Applied after the
    gradient step, so one step is ``p1 = (p0 - eta_t * scale * direction) * (1 - eta_t * wd)``.
    The switch lives in the model config because that is where the groups' coupled decay is
    set; with it off (or ``wd == 0``) this extension does nothing.
    """

    def make(self, trainer: Trainer, optimizer: ScheduledOptimizer) -> RunHooks:
        rate = trainer.optimizer_config.weight_decay
        if not getattr(trainer.model_config, "decoupled_weight_decay", False) or rate == 0:
            return RunHooks()
        groups = [(list(group["params"]), group["lr"], rate / scale)
                  for group, scale in zip(optimizer.optimizer.param_groups, optimizer.lr_scales)]

        @torch.no_grad()
        def decay() -> None:
            for params, lr, rate_per_lr in groups:
                torch._foreach_mul_(params, 1 - lr * rate_per_lr)

        return RunHooks(after_step=(decay,))
