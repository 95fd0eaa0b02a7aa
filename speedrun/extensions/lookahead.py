"""Lookahead (Zhang et al., 2019) in airbench's form: a slow copy of the weights the fast ones are pulled to."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from speedrun.kernels.ema_update import ema_update_reference
from speedrun.settings import check, setting
from speedrun.training.hooks import RunHooks
from speedrun.training.optimizers import ScheduledOptimizer

if TYPE_CHECKING:
    from speedrun.training.trainer import Trainer

# The pure-torch reference of kernels/ema_update: per kernels/README.md's keep-or-drop rule the
# loop uses a kernel only once a GPU benchmark shows it faster, and none has been measured yet.


@dataclass(frozen=True)
class LookaheadConfig:
    """A slow copy of the weights that the fast weights are pulled back to every ``every`` steps.

    Rule, with ``n`` the number of steps taken so far in the run and ``T`` the run's planned
    steps: when ``n % every == 0``, ``d = decay * min(n / T, 1) ** ramp_power``, then
    ``slow <- d * slow + (1 - d) * fast`` and ``fast <- slow`` for every trained parameter
    (and, with ``include_buffers``, every floating-point buffer: the BN running statistics).
    At the end of the last epoch one more pull is made if steps were taken since the last one,
    so the evaluated weights are the slow ones and no step is dropped. ``d`` ramps from 0 (early:
    the pull is a no-op, the weights move freely) to ``decay`` (late: averaging over about
    ``every / (1 - decay)`` steps). The per-update decays are one device tensor made before the
    run; the step count is a host integer; so no step syncs with the host. ``enabled=False``
    switches it off. This is the form airbench uses (0.95**5 every 5 steps, cubic ramp).
    """

    enabled: bool = setting(True, "pull the weights towards their slow copy")
    every: int = setting(5, "steps between pulls", low=1, high=10**6)
    decay: float = setting(0.95 ** 5, "the slow copy's decay per pull, late in the run", low=0, high=1)
    ramp_power: float = setting(3.0, "how the decay ramps up over the run", low=0, high=100)
    include_buffers: bool = setting(True, "pull the BN statistics too")

    def __post_init__(self) -> None:
        check(self)

    def decay_at(self, step: int, total_steps: int) -> float:
        """The decay ``d`` of the pull after ``step`` steps of a ``total_steps`` run."""
        return self.decay * min(step / max(total_steps, 1), 1.0) ** self.ramp_power

    def make(self, trainer: Trainer, optimizer: ScheduledOptimizer) -> RunHooks:
        if not self.enabled:
            return RunHooks()
        model = trainer.model
        fast = [p for p in model.parameters() if p.requires_grad]
        if self.include_buffers:
            fast += [b for b in model.buffers() if b.is_floating_point()]
        slow = [t.detach().clone() for t in fast]
        total = trainer.total_steps
        decays = torch.tensor([self.decay_at(n, total) for n in range(total + 1)], dtype=torch.float32,
                              device=trainer.device)
        state = {"steps": 0, "pulled_at": 0}

        def pull() -> None:
            n = min(state["steps"], total)
            lookahead_pull(slow, fast, decays[n])
            state["pulled_at"] = state["steps"]

        def after_step() -> None:
            state["steps"] += 1
            if state["steps"] % self.every == 0:
                pull()

        def after_epoch(epoch: int) -> None:
            if epoch == trainer.last_epoch and state["steps"] > state["pulled_at"]:
                pull()

        return RunHooks(after_step=(after_step,), after_epoch=(after_epoch,))


@torch.no_grad()
def lookahead_pull(slow: Sequence[Tensor], fast: Sequence[Tensor], decay: Tensor) -> None:
    """``slow <- decay * slow + (1 - decay) * fast``, then ``fast <- slow``; ``decay`` a 0-d device tensor."""
    ema_update_reference(list(slow), list(fast), decay)
    torch._foreach_copy_(list(fast), list(slow))
