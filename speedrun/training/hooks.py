"""How extensions join a run: the hooks they hand the trainer, and the state a run carries.

An extension (:class:`~speedrun.training.trainer.Extension`) hands the trainer its hooks; the trainer
calls every hook at its place in the loop. Device-side hooks must not sync with the host.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from speedrun.training.optimizers import ScheduledOptimizer
from speedrun.training.run_result import EpochLog


@dataclass
class RunHooks:
    """Behaviour an extension adds to one run. Device-side hooks must not sync with the host.

    after_step:  device work after each optimizer step (EMA, lookahead).
    after_epoch: device work at an epoch's end, before its evaluation (SWA averaging,
                 saving a snapshot); gets the 1-based epoch.
    after_log:   host work after the epoch's one sync, with its log (reduce-on-plateau).
    eval_model:  which function to evaluate with (e.g. EMA or SWA weights); None: the model.
    finish:      after the last epoch, inside the timed part: returns a device accuracy that
                 replaces the final one (SWA after its BN update, a snapshot ensemble), or None.
    report:      after the run, outside the timed part: what the extension did, for the record and
                 the console (``{"method": "swa", "weights_averaged": 5}``); may read the device.
    """

    after_step: Sequence[Callable[[], None]] = ()
    after_epoch: Sequence[Callable[[int], None]] = ()
    after_log: Sequence[Callable[[int, EpochLog], None]] = ()
    eval_model: Callable[[], Callable[[Tensor], Tensor]] | None = None
    finish: Callable[[], Tensor | None] | None = None
    report: Sequence[Callable[[], dict]] = ()

    @classmethod
    def combine(cls, hooks: Sequence[RunHooks]) -> RunHooks:
        """One set of hooks for a run, flattened once, in extension order.

        Step, epoch and log hooks all run, in order. For ``eval_model`` and ``finish`` the last
        extension that sets one wins: every ``finish`` runs (each may have work to do), and the
        accuracy of the last one that returns a value replaces the final evaluation.
        """
        finishes = [h.finish for h in hooks if h.finish is not None]

        def finish_all() -> Tensor | None:
            accuracy = None
            for fn in finishes:
                returned = fn()
                accuracy = accuracy if returned is None else returned
            return accuracy

        return cls(after_step=tuple(fn for h in hooks for fn in h.after_step),
                   after_epoch=tuple(fn for h in hooks for fn in h.after_epoch),
                   after_log=tuple(fn for h in hooks for fn in h.after_log),
                   eval_model=next((h.eval_model for h in reversed(hooks) if h.eval_model), None),
                   finish=finish_all if finishes else None,
                   report=tuple(fn for h in hooks for fn in h.report))


@dataclass
class RunState:
    """What one run carries from epoch to epoch, all on the device but the hooks."""

    optimizer: ScheduledOptimizer
    hooks: RunHooks
    generator: torch.Generator
    first_flips: Tensor               # each image's flip in the first epoch (alternating flips)
    loss_sum: Tensor                  # this epoch's summed training loss
    correct: Tensor                   # this epoch's correct training predictions
    graphed_step: Callable[..., tuple[Tensor, Tensor | None]] | None = None   # the step as a CUDA graph (cuda_graph)
    single_accuracy: Tensor | None = None      # the trained model's own accuracy, when a finish hook replaced it
