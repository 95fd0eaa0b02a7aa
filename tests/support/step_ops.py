"""How many device ops a training step issues outside its compiled graph, each a kernel launch on a GPU.

On a GPU a step's graph (:meth:`~speedrun.training.trainer.Trainer.batch_loss`: augmentation,
normalization, forward, loss and hit count, and their backward) runs as a few fused kernels;
everything else (the batch's random draws and gather, the optimizer and its hyperparameter
copies, the extensions' per-step hooks, the loss and accuracy bookkeeping) is launched op by op
from Python. At a few microseconds a launch, dozens of them cost as much as a small kernel each
step, so this count is what a whole-step graph with the optimizer in it, or fewer hooks, would
save. It is counted with a :class:`~torch.utils._python_dispatch.TorchDispatchMode` on an eager
copy of the run's trainer (the count is of ops, so any device gives it, and compiling does not
change what lies outside the graph): one step's ops, minus the graph's. Ops that launch nothing
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
    """Ops per training step outside the step's graph, by part (a per-``every``-step hook averaged)."""

    augment: float          # the random draws and the batch's gather (and the input kernel, when on)
    loss: float             # the step's bookkeeping: the running loss and hit count
    optimizer: float        # the optimizer step with its hyperparameter copies
    hooks: float            # the extensions' per-step hooks (decoupled decay, lookahead, ...)
    graph: float            # the step's graph, forward and backward, counted eagerly: a few kernels compiled
    by_op: dict[str, float]  # every op outside the graph, per step, by name

    @property
    def outside(self) -> float:
        return self.augment + self.loss + self.optimizer + self.hooks

    def to_dict(self) -> dict:
        return {"outside_graph": self.outside, "augment": self.augment, "bookkeeping": self.loss,
                "optimizer": self.optimizer, "hooks": self.hooks, "graph_eager": self.graph,
                "by_op": dict(sorted(self.by_op.items(), key=lambda kv: -kv[1]))}

    def describe(self) -> str:
        return (f"{self.outside:.1f} ops a step outside the step's graph (draws and gather {self.augment:.1f}, "
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
    parts: dict[str, Counter[str]] = {name: Counter() for name in ("augment", "step", "optimizer", "hooks", "graph")}
    idle: Counter[str] = Counter()           # the uncounted first step

    eager.model.train()
    for step in range(steps + 1):
        into = parts if step else {name: idle for name in parts}
        indices = batch_order(len(images), run.generator)[:eager.config.batch_size]
        with _counting(into["augment"]):
            batch, params = eager.step_input(images, indices,
                                             eager.augment_params(run.generator, indices, 1, run.first_flips))
        with _counting(into["step"]):       # train_step as the loop runs it, the graph inside
            counted = cast(ScheduledOptimizer, _CountedOptimizer(run.optimizer, into["optimizer"]))
            loss, hits = eager.train_step(batch, labels[indices], params, counted)
            run.loss_sum += loss
            if hits is not None:
                run.correct += hits
        with _counting(into["hooks"]):
            for fn in run.hooks.after_step:
                fn()
    with _counting(parts["graph"]):          # the step's graph alone, once: its forward and backward
        eager.batch_loss(batch, labels[indices], params)[0].backward()
    eager.model.zero_grad(set_to_none=True)

    def per_step(part: str) -> dict[str, float]:
        return {op: n / steps for op, n in parts[part].items()}

    graph = {op: float(n) for op, n in parts["graph"].items()}
    augment, optimizer, hooks = per_step("augment"), per_step("optimizer"), per_step("hooks")
    step_ops = per_step("step")
    # The bookkeeping: the step's ops less the optimizer's and the graph's.
    rest = {op: n - optimizer.get(op, 0.0) - graph.get(op, 0.0) for op, n in step_ops.items()}
    outside: dict[str, float] = {}
    for counts in (augment, optimizer, hooks, rest):
        for op, n in counts.items():
            outside[op] = outside.get(op, 0.0) + n
    return StepOps(augment=sum(augment.values()), loss=sum(rest.values()), optimizer=sum(optimizer.values()),
                   hooks=sum(hooks.values()), graph=sum(graph.values()),
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
