"""How many device ops a training step issues outside the model, each a kernel launch on a GPU.

On a GPU the compiled model is a forward and a backward graph; everything else in a step (the
batch's random draws and augmentation, the loss, the optimizer and its hyperparameter copies,
the extensions' per-step hooks, the loss and accuracy bookkeeping) is launched op by op from
Python. At a few microseconds a launch, 60-80 of them cost as much as a small kernel each step,
so this count is what a whole-step graph, or fewer hooks, would save. It is counted with a
:class:`~torch.utils._python_dispatch.TorchDispatchMode` on an eager copy of the run's trainer
(the count is of ops, so any device gives it, and a compiled graph does not change what lies
outside it): one step's ops, minus the model's forward and backward. Ops that launch nothing
(views, allocations, metadata) are not counted; a foreach or fused op counts once, as it is
one multi-tensor launch on a GPU.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from speedrun.data.augment import batch_order
from speedrun.training.optimizers import ScheduledOptimizer
from speedrun.training.trainer import Trainer

# Ops that launch no kernel: allocations, metadata, views that the schema does not mark as such,
# and the profiler's markers (torch.optim's step records one).
_NO_LAUNCH = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh",
                        "set_", "resize_", "sym_size", "sym_stride", "sym_numel", "is_same_size", "_unsafe_view",
                        "_record_function_enter_new", "_record_function_exit"})


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched inside it that launch work: not views, allocations or metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func.overloadpacket.__name__
        if not func.is_view and name not in _NO_LAUNCH:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


@dataclass(frozen=True)
class StepOps:
    """Ops per training step outside the model, by part (a per-``every``-step hook averaged)."""

    augment: float          # random draws, crop/flip/cutout, normalization
    loss: float             # the loss, its backward to the logits, and the step's bookkeeping
    optimizer: float        # the optimizer step with its hyperparameter copies
    hooks: float            # the extensions' per-step hooks (decoupled decay, lookahead, ...)
    model: float            # the model's forward and backward: inside the compiled graphs on a GPU
    by_op: dict[str, float]  # every op outside the model, per step, by name

    @property
    def outside(self) -> float:
        return self.augment + self.loss + self.optimizer + self.hooks

    def to_dict(self) -> dict:
        return {"outside_model": self.outside, "augment": self.augment, "loss_and_bookkeeping": self.loss,
                "optimizer": self.optimizer, "hooks": self.hooks, "model_eager": self.model,
                "by_op": dict(sorted(self.by_op.items(), key=lambda kv: -kv[1]))}

    def describe(self) -> str:
        return (f"{self.outside:.1f} ops a step outside the model (augment {self.augment:.1f}, loss and "
                f"bookkeeping {self.loss:.1f}, optimizer {self.optimizer:.1f}, hooks {self.hooks:.1f})")


@contextmanager
def _counting(into: Counter[str]) -> Iterator[None]:
    counter = OpCounter()
    with counter:
        yield
    into.update(counter.ops)


def count_step_ops(trainer: Trainer, lr: torch.Tensor, momentum: torch.Tensor | None = None,
                   steps: int = 10) -> StepOps:
    """Count ``steps`` training steps of ``trainer``'s recipe (eager), per step (module docstring).

    ``trainer`` may be compiled: the count runs on an eager trainer of the same recipe and data.
    One uncounted step first makes the optimizer's state; ``steps`` then covers hooks that act
    every few steps (lookahead's every 5). The weights it trains are re-initialized by the next
    run, as after a rehearsal.
    """
    eager = Trainer(trainer.model_config, trainer.data, augment=trainer.augment, optimizer=trainer.optimizer_config,
                    train=trainer.config, compile_model=False, extensions=trainer.extensions)
    eager.initialize(0)
    run = eager.start_run(0, lr, momentum)
    images, labels = eager.data.train_images, eager.data.train_labels
    parts: dict[str, Counter[str]] = {name: Counter() for name in ("augment", "step", "optimizer", "hooks", "model")}
    idle: Counter[str] = Counter()           # the uncounted first step

    eager.model.train()
    for step in range(steps + 1):
        into = parts if step else {name: idle for name in parts}
        indices = batch_order(len(images), run.generator)[:eager.config.batch_size]
        with _counting(into["augment"]):
            x = eager.input_batch(images, indices, eager.augment_params(run.generator, indices, 1, run.first_flips))
        with _counting(into["step"]):       # train_step as the loop runs it, the model inside
            counted = cast(ScheduledOptimizer, _CountedOptimizer(run.optimizer, into["optimizer"]))
            loss, hits = eager.train_step(x, labels[indices], counted)
            run.loss_sum += loss
            run.correct += hits
        with _counting(into["hooks"]):
            for fn in run.hooks.after_step:
                fn()
    grad = torch.ones_like(eager.forward(x))
    with _counting(parts["model"]):          # the model alone, once: its forward and backward
        eager.forward(x).backward(grad)
    eager.model.zero_grad(set_to_none=True)

    def per_step(part: str) -> dict[str, float]:
        return {op: n / steps for op, n in parts[part].items()}

    model = {op: float(n) for op, n in parts["model"].items()}
    augment, optimizer, hooks = per_step("augment"), per_step("optimizer"), per_step("hooks")
    step_ops = per_step("step")
    # The loss and the bookkeeping: the step's ops less the optimizer's and the model's.
    rest = {op: n - optimizer.get(op, 0.0) - model.get(op, 0.0) for op, n in step_ops.items()}
    outside: dict[str, float] = {}
    for counts in (augment, optimizer, hooks, rest):
        for op, n in counts.items():
            outside[op] = outside.get(op, 0.0) + n
    return StepOps(augment=sum(augment.values()), loss=sum(rest.values()), optimizer=sum(optimizer.values()),
                   hooks=sum(hooks.values()), model=sum(model.values()),
                   by_op={op: n for op, n in outside.items() if n > 1e-9})


class _CountedOptimizer:
    """The run's optimizer, its step and zero_grad counted apart from the rest of train_step."""

    def __init__(self, optimizer: ScheduledOptimizer, into: Counter[str]) -> None:
        self._scheduled, self._into = optimizer, into
        self.optimizer = optimizer.optimizer        # train_step reads the param groups from it

    def step(self) -> None:
        with _counting(self._into):
            self._scheduled.step()

    def zero_grad(self) -> None:
        with _counting(self._into):
            self._scheduled.zero_grad()
