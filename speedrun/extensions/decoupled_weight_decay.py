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
        groups = optimizer.optimizer.param_groups
        params = [list(group["params"]) for group in groups]
        lrs = [group["lr"] for group in groups]
        rates = torch.tensor([rate / scale for scale in optimizer.lr_scales], dtype=lrs[0].dtype, device=lrs[0].device)

        @torch.no_grad()
        def decay() -> None:
            # Every group's factor at once (three ops for any number of groups), then one
            # multi-tensor multiply per group.
            factors = (1 - torch.stack(lrs) * rates).unbind()
            for group_params, factor in zip(params, factors):
                torch._foreach_mul_(group_params, factor)

        return RunHooks(after_step=(decay,))
