"""Snapshot ensembles (Huang et al., 2017) for runs with warm restarts (SGDR).

Each cosine cycle ends at a low learning rate in a different minimum; a copy of the weights
taken there is a cheap ensemble member. The extension keeps device copies of the weights (and
batch-norm buffers) at each cycle's last epoch and, at the end of the run, scores the ensemble:
the mean of the members' test logits (each under the run's test-time augmentation), argmax.

Cycle ends are given as epochs, or found in the run's lr schedule: a restart is a step where
the lr jumps up by more than half of the schedule's range, and the epoch that ends at or just
before it is a cycle end. The run's last epoch is always a member, as in the paper.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from speedrun.errors import SettingError
from speedrun.settings import check, setting
from speedrun.training.evaluation import predict
from speedrun.training.hooks import RunHooks

if TYPE_CHECKING:
    from speedrun.training.optimizers import ScheduledOptimizer
    from speedrun.training.trainer import Trainer


@dataclass(frozen=True)
class SnapshotEnsembleConfig:
    """Ensemble the weights at ``cycle_end_epochs`` (1-based); None: find the restarts in the schedule."""

    cycle_end_epochs: tuple[int, ...] | None = setting(
        None, "take the snapshots at these epochs (default: at the schedule's restarts)", low=1, high=10_000,
        flag="--snapshot-epochs", metavar="E1,E2,...")

    def __post_init__(self) -> None:
        check(self)
        if self.cycle_end_epochs is not None:
            ends = tuple(self.cycle_end_epochs)
            if any(b <= a for a, b in itertools.pairwise(ends)):
                raise SettingError("cycle_end_epochs", f"must be strictly increasing, got {ends}")
            object.__setattr__(self, "cycle_end_epochs", ends)

    def make(self, trainer: Trainer, optimizer: ScheduledOptimizer) -> RunHooks:
        total = trainer.last_epoch
        ends = self.cycle_end_epochs
        if ends is None:
            # One read of the schedule, before the run's timed part starts.
            ends = cycle_ends_from_lr(optimizer.lr_schedule.detach().cpu(), trainer.steps_per_epoch, total)
            if len(ends) < 2:
                raise ValueError("snapshot ensemble: the lr schedule has no warm restarts; use "
                                 "--schedule cosine_annealing_warm_restarts or give --snapshot-epochs")
        elif ends[-1] > total:
            raise ValueError(f"cycle_end_epochs {ends} go past the run's {total} epochs")
        snapshots = SnapshotCollector(trainer.model, ends)

        def finish() -> Tensor:
            logits = ensemble_logits(snapshots.scratch_model(), snapshots.members, trainer.data.test_images,
                                     tta=trainer.config.tta, batch_size=trainer.config.eval_batch_size,
                                     amp_dtype=trainer.config.amp_dtype, tta_share=trainer.config.tta_share)
            return (logits.argmax(1) == trainer.data.test_labels).float().mean()

        def report() -> dict:
            return {"method": "snapshot_ensemble", "snapshots": len(snapshots.members),
                    "snapshot_epochs": [e for e in ends if e <= total]}

        return RunHooks(after_epoch=(snapshots.after_epoch,), finish=finish, report=(report,))


def sgdr_cycle_ends(T_0: int, T_mult: int, total_epochs: int) -> tuple[int, ...]:
    """Epochs (1-based) at which SGDR cycles of ``T_0``, ``T_0*T_mult``, ... epochs end, within
    ``total_epochs``; ``total_epochs`` itself is always included (the run's final weights)."""
    for name, value, low in (("T_0", T_0, 1), ("T_mult", T_mult, 1), ("total_epochs", total_epochs, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    ends, end, length = [], T_0, T_0
    while end < total_epochs:
        ends.append(end)
        length *= T_mult
        end += length
    return (*ends, total_epochs)


def cycle_ends_from_lr(lr: Tensor, steps_per_epoch: int, total_epochs: int) -> tuple[int, ...]:
    """Cycle-end epochs found in a per-step schedule: see the module doc for the rule."""
    values = lr.double()[:steps_per_epoch * total_epochs]
    span = float(values.max() - values.min()) if len(values) else 0.0
    if span <= 0:
        return (total_epochs,)
    jumps = torch.nonzero(values[1:] - values[:-1] > span / 2).flatten() + 1   # first step of a new cycle
    ends = sorted({int(step) // steps_per_epoch for step in jumps} - {0})
    return (*[e for e in ends if e < total_epochs], total_epochs)


class SnapshotCollector:
    """Device copies of a model's weights and buffers taken at the end of chosen epochs."""

    def __init__(self, model: nn.Module, epochs: Sequence[int]) -> None:
        self.model = model
        self.epochs = frozenset(epochs)
        self.taken: list[int] = []
        self.members: list[list[Tensor]] = []
        self._scratch: nn.Module | None = None

    def after_epoch(self, epoch: int) -> None:
        if epoch in self.epochs:
            with torch.no_grad():
                self.members.append([t.detach().clone() for t in self.model.state_dict().values()])
            self.taken.append(epoch)

    def scratch_model(self) -> nn.Module:
        """A separate copy of the model to load members into (the trained model is left alone)."""
        if self._scratch is None:
            self._scratch = copy.deepcopy(self.model)
        return self._scratch


@torch.no_grad()
def ensemble_logits(model: nn.Module, members: Sequence[Sequence[Tensor]], images_u8: Tensor, *,
                    tta: str = "flip", batch_size: int = 1000, amp_dtype: str = "bf16",
                    tta_share: float = 0.1) -> Tensor:
    """Mean over ``members`` of their float32 logits on ``images_u8`` (via :func:`predict`).

    Each member is a list of tensors in ``model.state_dict()`` order; it is loaded into ``model``
    (which is overwritten and left in eval mode) and run over all images before the next.
    """
    if not members:
        raise ValueError("ensemble_logits needs at least one member")
    targets = list(model.state_dict().values())
    model.eval()
    total: Tensor | None = None
    for member in members:
        if len(member) != len(targets):
            raise ValueError(f"a member has {len(member)} tensors; the model's state has {len(targets)}")
        torch._foreach_copy_(targets, list(member))
        logits = torch.cat([predict(model, images_u8[start:start + batch_size], tta, amp_dtype, tta_share)
                            for start in range(0, len(images_u8), batch_size)])
        total = logits if total is None else total + logits
    assert total is not None
    return total / len(members)

