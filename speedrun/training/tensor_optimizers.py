"""PyTorch's update rules with every per-step hyperparameter a 0-d device tensor, so ``step()`` never syncs.

:mod:`speedrun.training.optimizers` says which of these runs for which optimizer and why.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import Tensor


class _TensorHyperparameterOptimizer(torch.optim.Optimizer):
    """Base of the optimizers below: hyperparameters that change per step are 0-d device tensors.

    PyTorch's own implementations turn a tensor ``lr`` (RMSprop, Adadelta) or tensor ``betas``
    (fused Adam) into Python floats inside ``step()``, and on a GPU each such read waits for the
    device. These keep every per-step value on the device, so ``step()`` never syncs, and use
    multi-tensor (foreach) ops so eager mode is a few launches per group. ``_state(p, name)``
    makes a zero buffer the first time a parameter is stepped, as PyTorch does.
    """

    def _groups_to_step(self) -> Iterator[tuple[dict, list[Tensor], list[Tensor]]]:
        """``(group, params, grads)`` for every group, over the parameters that have a gradient."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                yield group, params, [cast(Tensor, p.grad) for p in params]

    def _state(self, params: Sequence[Tensor], name: str, dtype: torch.dtype | None = None) -> list[Tensor]:
        buffers = []
        for p in params:
            state = self.state[p]
            if name not in state:
                state[name] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            buffers.append(state[name])
        return buffers

    def _step_count(self, group: dict, device: torch.device) -> Tensor:
        """The group's number of steps taken, this one included, as a float32 device scalar."""
        if "step" not in group:
            group["step"] = torch.zeros((), dtype=torch.float32, device=device)
        group["step"] += 1
        return group["step"]

    @staticmethod
    def _with_l2(grads: list[Tensor], params: list[Tensor], weight_decay: float) -> list[Tensor]:
        return list(torch._foreach_add(grads, params, alpha=weight_decay)) if weight_decay else grads


class TensorMomentumSGD(_TensorHyperparameterOptimizer):
    """SGD with momentum, Nesterov and L2 weight decay, reading ``lr`` and ``momentum`` from tensors.

    The update is PyTorch's SGD with dampening 0: ``g += wd * p``; ``b = m * b + g`` (b starts
    at zero, which makes the first step ``b = g`` exactly as PyTorch does); the step direction
    is ``g + m * b`` with Nesterov, else ``b``; ``p -= lr * direction``.
    """

    def __init__(self, params: Iterable[Any], lr: Tensor, momentum: Tensor, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group, params, grads in self._groups_to_step():
            grads = self._with_l2(grads, params, group["weight_decay"])
            bufs = self._state(params, "momentum_buffer")
            momentum, lr = group["momentum"], group["lr"]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads)
            direction = torch._foreach_add(grads, torch._foreach_mul(bufs, momentum)) if group["nesterov"] else bufs
            torch._foreach_sub_(params, torch._foreach_mul(direction, lr))


class TensorAdam(_TensorHyperparameterOptimizer):
    """Adam, or AdamW with ``decoupled=True``, with ``lr`` and ``betas`` read from device tensors.

    PyTorch's update (no amsgrad): ``g += wd * p`` (Adam) or ``p *= 1 - lr * wd`` (AdamW);
    ``m = b1 * m + (1 - b1) * g``; ``v = b2 * v + (1 - b2) * g^2``; with ``t`` the step count,
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``. As in PyTorch the bias
    corrections use the *current* betas, which matters when beta1 is cycled. Used when a
    schedule cycles beta1; with constant betas the loop uses PyTorch's fused Adam, which takes
    a tensor ``lr`` without syncing.
    """

    def __init__(self, params: Iterable[Any], lr: Tensor, betas: tuple[Tensor, Tensor], eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=decoupled))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group, params, grads in self._groups_to_step():
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            if group["decoupled"]:
                if wd:
                    torch._foreach_mul_(params, 1 - lr * wd)
            else:
                grads = self._with_l2(grads, params, wd)
            exp_avgs, exp_avg_sqs = self._state(params, "exp_avg"), self._state(params, "exp_avg_sq")
            t = self._step_count(group, lr.device)
            torch._foreach_mul_(exp_avgs, beta1)
            torch._foreach_add_(exp_avgs, torch._foreach_mul(grads, 1 - beta1))
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_add_(exp_avg_sqs, torch._foreach_mul(torch._foreach_mul(grads, grads), 1 - beta2))
            step_size = lr / (1 - beta1 ** t)
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, torch.sqrt(1 - beta2 ** t))
            torch._foreach_add_(denom, group["eps"])
            update = torch._foreach_div(exp_avgs, denom)
            torch._foreach_mul_(update, step_size)
            torch._foreach_sub_(params, update)


class TensorRMSprop(_TensorHyperparameterOptimizer):
    """RMSprop (not centred) with ``lr`` read from a device tensor; PyTorch's update rule.

    ``g += wd * p``; ``v = alpha * v + (1 - alpha) * g^2``; ``d = g / (sqrt(v) + eps)``; with
    momentum ``b = momentum * b + d`` and ``p -= lr * b``, else ``p -= lr * d``.
    """

    def __init__(self, params: Iterable[Any], lr: Tensor, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group, params, grads in self._groups_to_step():
            grads = self._with_l2(grads, params, group["weight_decay"])
            alpha, momentum = group["alpha"], group["momentum"]
            square_avgs = self._state(params, "square_avg")
            torch._foreach_mul_(square_avgs, alpha)
            torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
            avg = torch._foreach_sqrt(square_avgs)
            torch._foreach_add_(avg, group["eps"])
            direction = list(torch._foreach_div(grads, avg))
            if momentum > 0:
                bufs = self._state(params, "momentum_buffer")
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, direction)
                direction = bufs
            torch._foreach_sub_(params, torch._foreach_mul(direction, group["lr"]))


class TensorAdadelta(_TensorHyperparameterOptimizer):
    """Adadelta with ``lr`` read from a device tensor; PyTorch's update rule.

    ``g += wd * p``; ``v = rho * v + (1 - rho) * g^2``; ``d = sqrt(u + eps) / sqrt(v + eps) * g``;
    ``u = rho * u + (1 - rho) * d^2``; ``p -= lr * d``.
    """

    def __init__(self, params: Iterable[Any], lr: Tensor, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group, params, grads in self._groups_to_step():
            grads = self._with_l2(grads, params, group["weight_decay"])
            rho, eps = group["rho"], group["eps"]
            square_avgs, acc_deltas = self._state(params, "square_avg"), self._state(params, "acc_delta")
            torch._foreach_mul_(square_avgs, rho)
            torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - rho)
            std = torch._foreach_sqrt(torch._foreach_add(square_avgs, eps))
            delta = torch._foreach_sqrt(torch._foreach_add(acc_deltas, eps))
            torch._foreach_div_(delta, std)
            torch._foreach_mul_(delta, grads)
            torch._foreach_mul_(acc_deltas, rho)
            torch._foreach_addcmul_(acc_deltas, delta, delta, value=1 - rho)
            torch._foreach_sub_(params, torch._foreach_mul(delta, group["lr"]))


class TensorAdagrad(_TensorHyperparameterOptimizer):
    """Adagrad with ``lr`` read from a device tensor; PyTorch's update rule (no lr decay).

    ``g += wd * p``; ``s += g^2`` (s starts at zero); ``p -= lr * g / (sqrt(s) + eps)``.
    PyTorch's own Adagrad reads a tensor ``lr`` on the host every step, and torch 2.11 has no
    CUDA kernel for its fused form.
    """

    def __init__(self, params: Iterable[Any], lr: Tensor, eps: float = 1e-10, weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group, params, grads in self._groups_to_step():
            grads = self._with_l2(grads, params, group["weight_decay"])
            sums = self._state(params, "sum")
            torch._foreach_addcmul_(sums, grads, grads)
            std = torch._foreach_sqrt(sums)
            torch._foreach_add_(std, group["eps"])
            update = torch._foreach_div(grads, std)
            torch._foreach_sub_(params, torch._foreach_mul(update, group["lr"]))
