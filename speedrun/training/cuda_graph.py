"""The whole training step as one CUDA graph: captured once per run, replayed every step.

Why: fast94's step is a few milliseconds of GPU work launched by about 150 kernels, and at that
size the host's launch time is a large share of the step. A CUDA graph replays all of them
(the compiled forward and backward, the optimizer's update and its schedule lookup) with one
launch. That is possible because nothing in a step reads the host: the learning rate and
momentum come from device schedules indexed by a device counter.

What stays outside the graph: the step's random draws and the extensions' after-step hooks
(EMA, lookahead), which run eagerly on the same stream, and everything at an epoch's end.

Capture needs warm-up steps (the optimizer creates its state lazily, cuDNN picks algorithms),
and those change the weights: :class:`GraphedStep` saves the model's parameters and buffers and
the optimizer's step counter first, puts them back after the capture, and resets the optimizer's
state to its fresh value (zeros, for every optimizer speedrun builds), so the run starts exactly
where an eager run would. The capture happens at the run's first step, inside the timed part.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from speedrun.data.augment import AugmentParams
from speedrun.errors import SettingError
from speedrun.training.optimizers import ScheduledOptimizer

StepBody = Callable[[Tensor, Tensor, Tensor, AugmentParams], tuple[Tensor, Tensor | None]]


def check_cuda_graph_device(cuda_graph: bool, device: torch.device) -> None:
    """A CUDA graph needs a CUDA device: said before any work, naming the setting."""
    if cuda_graph and device.type != "cuda":
        raise SettingError("cuda_graph", f"needs a CUDA device (it captures the training step as a CUDA graph) and the "
                                         f"device here is {device}; drop it or run on a GPU")


class GraphedStep:
    """A run's training step, captured as a CUDA graph at its first call and replayed after.

    ``body(images, labels, indices, params) -> (loss, correct)`` is the whole step: the batch
    gather, the step's graph, backward and the optimizer's step (not ``zero_grad``: captured
    gradients are written afresh on every replay). Calls with other ``images`` (the rehearsal's
    random pixels, then the data) capture again.
    """

    def __init__(self, body: StepBody, model: torch.nn.Module, optimizer: ScheduledOptimizer, warmup_steps: int = 2) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1 (the optimizer makes its state at its first step), got {warmup_steps}")
        self.body, self.model, self.optimizer, self.warmup_steps = body, model, optimizer, warmup_steps
        self._graph: Any = None
        self._images: Tensor | None = None
        self._inputs: tuple[Tensor, AugmentParams] | None = None
        self._outputs: tuple[Tensor, Tensor | None] | None = None

    def __call__(self, images: Tensor, labels: Tensor, indices: Tensor, params: AugmentParams) -> tuple[Tensor, Tensor | None]:
        if self._graph is None or images is not self._images:
            self._capture(images, labels, indices, params)
        assert self._inputs is not None and self._outputs is not None
        static_indices, static_params = self._inputs
        static_indices.copy_(indices)
        _copy_params(static_params, params)
        self._graph.replay()
        return self._outputs

    def _capture(self, images: Tensor, labels: Tensor, indices: Tensor, params: AugmentParams) -> None:
        static = (indices.clone(), _clone_params(params))
        state = [*self.model.parameters(), *self.model.buffers()]
        saved = [t.detach().clone() for t in state]
        counter = self.optimizer.counter.clone()
        self.optimizer.zero_grad()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_steps):
                self.body(images, labels, *static)
                self.optimizer.zero_grad()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.body(images, labels, *static)
        with torch.no_grad():
            torch._foreach_copy_(state, saved)
            self.optimizer.counter.copy_(counter)
            reset_optimizer_state(self.optimizer.optimizer)
        self._graph, self._images, self._inputs, self._outputs = graph, images, static, outputs


@torch.no_grad()
def reset_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every state tensor (and a group's own step count) back to its fresh value, in place.

    In place, because a captured graph holds their addresses. Fresh state is zero for every
    optimizer speedrun builds: momentum and moment buffers, squared-gradient sums, step counts
    (``tests/training/test_cuda_graph.py`` checks each against a fresh optimizer)."""
    tensors = [t for state in optimizer.state.values() for t in state.values() if isinstance(t, Tensor)]
    tensors += [g["step"] for g in optimizer.param_groups if isinstance(g.get("step"), Tensor)]
    for t in tensors:
        t.zero_()


def _tensor_fields(params: AugmentParams) -> dict[str, Tensor]:
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if isinstance(getattr(params, f.name), Tensor)}


def _clone_params(params: AugmentParams) -> AugmentParams:
    return dataclasses.replace(params, **{name: t.clone() for name, t in _tensor_fields(params).items()})


def _copy_params(static: AugmentParams, params: AugmentParams) -> None:
    fields = _tensor_fields(static)
    torch._foreach_copy_(list(fields.values()), [getattr(params, name) for name in fields])
