"""Reduce-on-plateau, as a trainer extension, for precomputed schedules.

PyTorch's ReduceLROnPlateau changes the optimizer's lr after looking at a metric. Our
training loop instead reads the lr from a per-step device tensor (see
:mod:`speedrun.schedules`), so :class:`PlateauController` keeps PyTorch's bookkeeping on the
host and, when it decides to reduce, rewrites the not-yet-used tail of that tensor in place
with device-side operations. Nothing waits for the device and nothing recompiles: the loop
simply reads smaller values from the next epoch on.

:class:`PlateauConfig` is the extension: after each epoch's one host sync, the metric from its
log goes to the controller. The default metric is the training loss (mode "min"): it exists
every epoch, and steering the schedule by test accuracy would tune the run on the test set that
then judges it, flattering the reported accuracy. ``metric="test_acc"`` (mode "max") is offered
for parity with common practice; epochs without an evaluation (``eval_every > 1``) are skipped.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, SupportsFloat

import torch

from speedrun.checks import int_at_least, one_of
from speedrun.settings import check, setting
from speedrun.training.hooks import RunHooks
from speedrun.training.run_result import EpochLog

if TYPE_CHECKING:
    from speedrun.training.optimizers import ScheduledOptimizer
    from speedrun.training.trainer import Trainer

MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")


class PlateauController:
    """Host-side ReduceLROnPlateau that edits a device schedule tensor in place.

    Call :meth:`step` once per epoch, after the epoch, with that epoch's metric, before the
    next epoch's steps are enqueued. When PyTorch's ReduceLROnPlateau would reduce, every
    value from the next epoch on (``lr[(epoch + 1) * steps_per_epoch:]``) becomes
    ``max(value * factor, min_lr)``, except where that would change it by no more than
    ``eps`` (PyTorch's rule, applied per step). On a constant schedule this reproduces
    PyTorch exactly; on a decaying one it scales the rest of the curve.

    The eps and min_lr comparisons happen in the tensor's dtype on its device (PyTorch
    compares Python floats), so a float32 tensor can differ at the eps boundary.
    """

    def __init__(self, schedule_lr: torch.Tensor, steps_per_epoch: int, **settings: Any) -> None:
        if not isinstance(schedule_lr, torch.Tensor) or schedule_lr.ndim != 1 \
                or not schedule_lr.is_floating_point():
            raise ValueError("schedule_lr must be a 1-D floating-point tensor")
        int_at_least("steps_per_epoch", steps_per_epoch, 1)
        mode = one_of("mode", settings.pop("mode", "min"), MODES)   # ReduceLROnPlateau's keywords: mode, factor, ...
        self.settings = PlateauConfig(metric=_METRIC_OF_MODE[mode], **settings)
        self.schedule_lr = schedule_lr
        self.steps_per_epoch = int(steps_per_epoch)
        self.best = math.inf if self.settings.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch: int | None = None
        self.reductions: list[int] = []  # epochs after which the rule fired

    def step(self, metric: SupportsFloat, epoch: int) -> bool:
        """Record ``epoch``'s metric; return True if the rule fired and the tail was rewritten.

        True follows PyTorch's reduction point even where ``min_lr`` or ``eps`` left the
        values as they were (knowing that would need a device sync).
        """
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        if self.last_epoch is not None and epoch <= self.last_epoch:
            raise ValueError(f"epoch must increase from call to call: got {epoch} after {self.last_epoch}")
        self.last_epoch = int(epoch)
        current = float(metric)
        settings = self.settings

        if settings.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during cooldown do not count
        if self.num_bad_epochs <= settings.patience:
            return False

        self._reduce_from((epoch + 1) * self.steps_per_epoch)
        self.cooldown_counter = settings.cooldown
        self.num_bad_epochs = 0
        self.reductions.append(int(epoch))
        return True

    def _reduce_from(self, start: int) -> None:
        tail = self.schedule_lr[start:]
        if tail.numel() == 0:
            return
        with torch.no_grad():
            reduced = torch.clamp(tail * self.settings.factor, min=self.settings.min_lr)
            tail.copy_(torch.where(tail - reduced > self.settings.eps, reduced, tail))

    def describe(self) -> dict:
        """JSON-friendly settings and what happened, for the result record."""
        return {**dataclasses.asdict(self.settings), "mode": self.settings.mode, "steps_per_epoch": self.steps_per_epoch,
                "reduced_after_epochs": list(self.reductions)}


PLATEAU_METRICS = {"train_loss": "min", "test_acc": "max"}
_METRIC_OF_MODE = {mode: metric for metric, mode in PLATEAU_METRICS.items()}


@dataclass(frozen=True)
class PlateauConfig:
    """The extension: ReduceLROnPlateau's rule (same names and defaults) and the logged metric it watches.

    ``factor`` multiplies the lr when the metric has not improved (by more than ``threshold``,
    relative or absolute) for more than ``patience`` epochs; after a reduction, ``cooldown``
    epochs are ignored. The lr never goes below ``min_lr``, and a reduction smaller than ``eps``
    is skipped. The metric sets the mode: a smaller training loss, a larger test accuracy.
    """

    metric: str = setting("train_loss", "train_loss (min) or test_acc (max; tunes on the test set)",
                          choices=tuple(PLATEAU_METRICS))
    factor: float = setting(0.1, "multiply the lr by this on a plateau", low=0, low_open=True, high=1, high_open=True)
    patience: int = setting(10, "epochs without improvement before a reduction", low=0, high=10_000)
    threshold: float = setting(1e-4, "improvement needed (a fraction, or an amount in abs mode)", low=0)
    threshold_mode: str = setting("rel", "rel: improve by a fraction; abs: by an amount", choices=THRESHOLD_MODES)
    cooldown: int = setting(0, "epochs ignored after a reduction", low=0, high=10_000)
    min_lr: float = setting(0.0, "lower bound on the lr", low=0)
    eps: float = setting(1e-8, "a reduction smaller than this is skipped", low=0)

    def __post_init__(self) -> None:
        check(self)

    @property
    def mode(self) -> str:
        return PLATEAU_METRICS[self.metric]

    def is_better(self, value: float, best: float) -> bool:
        """PyTorch's improvement test, including its quirk that relative thresholds on a
        negative ``best`` move the bar the other way."""
        if self.mode == "min":
            bar = best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold
            return value < bar
        bar = best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold
        return value > bar

    def make(self, trainer: Trainer, optimizer: ScheduledOptimizer) -> RunHooks:
        # Reductions must not leak into the next run that shares this schedule tensor, so this
        # run gets its own copy (a device op; extensions made later edit the copy).
        optimizer.lr_schedule = optimizer.lr_schedule.clone()
        controller = PlateauController(optimizer.lr_schedule, trainer.steps_per_epoch, mode=self.mode,
                                       **{k: v for k, v in dataclasses.asdict(self).items() if k != "metric"})

        def after_log(epoch: int, entry: EpochLog) -> None:
            value = getattr(entry, self.metric)
            if value is not None:
                controller.step(value, epoch - 1)   # the controller counts epochs from 0

        return RunHooks(after_log=(after_log,))
