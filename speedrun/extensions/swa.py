"""Stochastic weight averaging (Izmailov et al., 2018) as a trainer extension.

The last ``epochs`` epochs of a run form the SWA phase. Its learning rate is annealed from
the schedule's value at the phase's first step to ``swa_lr`` over ``anneal_epochs`` epochs and
then held, as ``torch.optim.swa_utils.SWALR`` does when stepped once per epoch. Because the
loop reads its lr from a per-step device tensor, the phase is written into that tensor's tail
once, at the start of the run, with device ops only.

At the end of every SWA-phase epoch the weights are folded into a running mean held in a
separate copy of the model (the trained model is never touched), using multi-tensor device
ops and a device-side count, so averaging never waits for the host. Only parameters are
averaged: averaging batch-norm running statistics would describe none of the averaged
weights, so at the end they are recomputed for the averaged weights instead (as
``torch.optim.swa_utils.update_bn`` does), over the un-augmented training images, which are
what the test images look like. The run's final accuracy is then that of the averaged model.
Evaluations before the last epoch (and so an early stop at the target) see the trained model:
the average has no batch-norm statistics of its own until the end.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from speedrun.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from speedrun.errors import SettingError
from speedrun.schedules import ANNEAL_STRATEGIES
from speedrun.settings import check, setting
from speedrun.training.hooks import RunHooks
from speedrun.training.precision import autocast_for

if TYPE_CHECKING:
    from speedrun.training.optimizers import ScheduledOptimizer
    from speedrun.training.trainer import Trainer


@dataclass(frozen=True)
class SWAConfig:
    """SWA over the last ``epochs`` epochs at ``swa_lr``, reached after ``anneal_epochs`` epochs.

    ``anneal_epochs=0`` switches to ``swa_lr`` at once. The rate applies to the schedule's base
    value, so parameter groups with an lr multiplier keep it.
    """

    epochs: int = setting(None, "average the weights over the last N epochs (BN statistics recomputed at the end)",
                          low=1, high=10_000, metavar="N")
    swa_lr: float = setting(None, "learning rate of the SWA phase", low=0, flag="--swa-lr", metavar="LR")
    anneal_epochs: int = setting(0, "epochs to anneal from the schedule's lr to --swa-lr (0: switch at once)", low=0,
                                 high=10_000, metavar="N")
    anneal_strategy: str = setting("cos", "annealing shape", choices=ANNEAL_STRATEGIES)

    def __post_init__(self) -> None:
        for name in ("epochs", "swa_lr"):
            if getattr(self, name) is None:
                raise SettingError(name, "is needed for SWA: give {epochs} and {swa_lr} together")
        check(self)

    def make(self, trainer: Trainer, optimizer: ScheduledOptimizer) -> RunHooks:
        if not trainer.config.whole_epochs:
            raise ValueError(f"SWA averages whole epochs; the run's budget is {trainer.config.epochs} epochs: "
                             f"give --epochs a whole number")
        total = trainer.last_epoch
        if self.epochs > total:
            raise ValueError(f"swa epochs ({self.epochs}) must not exceed the run's epochs ({total})")
        write_swa_phase(optimizer.lr_schedule, self, steps_per_epoch=trainer.steps_per_epoch, total_epochs=total)
        average = WeightAverage(trainer.model)
        first_swa_epoch = total - self.epochs + 1

        def after_epoch(epoch: int) -> None:
            if epoch >= first_swa_epoch:
                average.update()

        def finish() -> Tensor:
            recompute_batchnorm_statistics(average.model, trainer.data.train_images,
                                           batch_size=trainer.config.batch_size, amp_dtype=trainer.config.amp_dtype)
            average.model.eval()
            return trainer.evaluate(average.model)

        def report() -> dict:
            return {"method": "swa", "weights_averaged": int(average.count)}

        return RunHooks(after_epoch=(after_epoch,), finish=finish, report=(report,))


def swa_phase_lr(start_lr: Tensor, config: SWAConfig, steps_per_epoch: int) -> Tensor:
    """The SWA phase's per-step lr from ``start_lr`` (a device scalar): SWALR's closed form.

    Epoch ``k`` of the phase (from 0) runs at ``swa_lr * a + start_lr * (1 - a)`` with
    ``a = anneal(min(1, k / anneal_epochs))`` (``a = 1`` throughout when ``anneal_epochs`` is 0),
    ``anneal`` being ``(1 - cos(pi t)) / 2`` or ``t``. That is the lr SWALR puts in an optimizer
    whose lr was ``start_lr`` when it was built, after ``k`` calls to its ``step()``.
    """
    k = torch.arange(config.epochs, device=start_lr.device, dtype=start_lr.dtype)
    if config.anneal_epochs == 0:
        alpha = torch.ones_like(k)
    else:
        t = (k / config.anneal_epochs).clamp(0, 1)
        alpha = (1 - torch.cos(math.pi * t)) / 2 if config.anneal_strategy == "cos" else t
    alpha = alpha.repeat_interleave(steps_per_epoch)
    return config.swa_lr * alpha + start_lr * (1 - alpha)


def write_swa_phase(lr: Tensor, config: SWAConfig, *, steps_per_epoch: int, total_epochs: int) -> None:
    """Overwrite the SWA phase's steps of the per-step schedule ``lr`` in place (device ops, no sync).

    Idempotent: the phase's first value is the schedule's (or, with no annealing, ``swa_lr``), so
    writing it twice into the same tensor, as runs sharing one schedule tensor would, changes nothing.
    """
    start = (total_epochs - config.epochs) * steps_per_epoch
    if start >= len(lr):
        raise ValueError(f"the schedule has {len(lr)} steps; the SWA phase would start at step {start}")
    tail = lr[start:total_epochs * steps_per_epoch]
    with torch.no_grad():
        tail.copy_(swa_phase_lr(lr[start], config, steps_per_epoch)[:len(tail)])


class WeightAverage:
    """A separate copy of ``model`` whose parameters are the running mean of ``model``'s.

    :meth:`update` folds the current weights in: ``avg += (w - avg) / (n + 1)`` computed as
    ``avg * (1 - 1/(n+1)) + w / (n+1)`` with ``n`` a device tensor, so the first update copies
    exactly and no update syncs. Buffers (BN statistics) are not averaged; see the module doc.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model)
        self.count = torch.zeros((), dtype=torch.float32, device=next(model.parameters()).device)
        self._source: list[Tensor] = list(model.parameters())
        self._average: list[Tensor] = list(self.model.parameters())
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 / (self.count + 1)
        torch._foreach_mul_(self._average, 1 - weight)
        torch._foreach_add_(self._average, list(torch._foreach_mul(self._source, weight)))
        self.count += 1


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, images_u8: Tensor, *, batch_size: int,
                                   amp_dtype: str = "bf16") -> None:
    """Reset every batch norm's running statistics and re-estimate them in one pass over ``images_u8``.

    Same result as ``torch.optim.swa_utils.update_bn`` over the normalized batches (an equally
    weighted mean of the batches' statistics, ``momentum=None``), but the ``1/k`` factor of batch
    ``k`` is set from the host's count instead of being read back from the device per layer
    and batch. Images are normalized, not augmented, and batched in order; the last batch may
    be partial. The model's training flag and BN momenta are restored afterwards.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [bn.momentum for bn in norms]
    was_training = model.training
    for bn in norms:
        bn.reset_running_stats()
    model.train()
    try:
        for k, start in enumerate(range(0, len(images_u8), batch_size), start=1):
            for bn in norms:
                bn.momentum = 1.0 / k
            x = normalize(images_u8[start:start + batch_size], CIFAR10_MEAN, CIFAR10_STD)
            with autocast_for(images_u8.device, amp_dtype):
                model(x)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.train(was_training)
