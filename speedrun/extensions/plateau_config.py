"""Reduce-on-plateau as a trainer extension: the epoch's logged metric drives the lr tensor.

After each epoch's one host sync, the metric from its log goes to a
:class:`speedrun.extensions.plateau.PlateauController`, which (when PyTorch's ReduceLROnPlateau would
reduce) rewrites the not-yet-used tail of the run's per-step lr tensor with device ops, so the
next epoch's steps read the reduced rate.

The default metric is the training loss (mode "min"): it exists every epoch, and steering the
schedule by test accuracy would tune the run on the test set that then judges it, flattering the
reported accuracy. ``metric="test_acc"`` (mode "max") is offered for parity with common
practice; epochs without an evaluation (``eval_every > 1``) are then skipped.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from speedrun.extensions.plateau import PlateauController, PlateauSettings
from speedrun.training.trainer import EpochLog, RunHooks

if TYPE_CHECKING:
    from speedrun.training.optimizers import ScheduledOptimizer
    from speedrun.training.trainer import Trainer

PLATEAU_METRICS = {"train_loss": "min", "test_acc": "max"}


@dataclass(frozen=True)
class PlateauConfig:
    """ReduceLROnPlateau's parameters (same names and defaults) and which logged metric it watches."""

    metric: str = "train_loss"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.metric not in PLATEAU_METRICS:
            raise ValueError(f"plateau metric must be one of {', '.join(PLATEAU_METRICS)}, got {self.metric!r}")
        self.settings()  # validates the rest, naming the bad parameter

    @property
    def mode(self) -> str:
        return PLATEAU_METRICS[self.metric]

    def settings(self) -> PlateauSettings:
        return PlateauSettings(mode=self.mode, factor=self.factor, patience=self.patience, threshold=self.threshold,
                               threshold_mode=self.threshold_mode, cooldown=self.cooldown, min_lr=self.min_lr,
                               eps=self.eps)

    def make(self, trainer: "Trainer", optimizer: "ScheduledOptimizer") -> RunHooks:
        # Reductions must not leak into the next run that shares this schedule tensor, so this
        # run gets its own copy (a device op; extensions made later edit the copy).
        optimizer.lr_schedule = optimizer.lr_schedule.clone()
        controller = PlateauController(optimizer.lr_schedule, trainer.steps_per_epoch,
                                       **dataclasses.asdict(self.settings()))

        def after_log(epoch: int, entry: EpochLog) -> None:
            value = getattr(entry, self.metric)
            if value is not None:
                controller.step(value, epoch - 1)   # the controller counts epochs from 0

        return RunHooks(after_log=(after_log,))
