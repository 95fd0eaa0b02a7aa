"""Optimizers driven by a per-step schedule held on the device.

The learning rate (and the momentum, or Adam's beta1, where the policy cycles it) of every step
is precomputed as a device tensor; a device-side step counter picks each step's value and
copies it into the optimizer's tensor hyperparameters. No step reads anything back to the
host, and compiled code sees tensors rather than changing Python floats, so nothing recompiles.

Which implementation runs, and why (each keeps PyTorch's update rule, tested step by step):

* SGD: ``torch.optim.SGD(fused=True)`` with a tensor ``lr``; when momentum is cycled,
  :class:`TensorMomentumSGD`, since PyTorch's SGD takes momentum as a Python float only.
* Adam / AdamW: fused PyTorch with a tensor ``lr`` and float betas; when beta1 is cycled,
  :class:`TensorAdam`, since fused Adam reads tensor betas back to the host every step.
* RMSprop / Adadelta: :class:`TensorRMSprop` / :class:`TensorAdadelta`, since PyTorch's turn a
  tensor ``lr`` into a float every step (its ``capturable`` mode avoids that on CUDA only).
* Adagrad: fused PyTorch with a tensor ``lr``, which syncs nothing.

``speedrun.bench.host_sync`` proves the "no sync" part on any device, the CPU included.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from speedrun.checks import boolean, one_of, real_in
from speedrun.errors import SettingError
from speedrun.settings import setting

OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
_CYCLES_MOMENTUM = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class OptimizerConfig:
    """Everything but the learning rate, which the schedule supplies each step."""

    name: str = setting("sgd", "optimizer; every one is driven by the same device schedule", flag="--optimizer",
                        choices=OPTIMIZER_NAMES, dest="optimizer")
    momentum: float = setting(0.9, "SGD/RMSprop momentum or Adam beta1 (when the schedule does not cycle it)")
    nesterov: bool = setting(True, "Nesterov momentum (SGD)")
    weight_decay: float = setting(5e-4, "weight decay (L2; decoupled where the recipe says so)")
    beta2: float = setting(0.999, "Adam/AdamW beta2")
    eps: float = setting(1e-8, "Adam/AdamW/RMSprop epsilon", flag="--optimizer-eps")
    alpha: float = setting(0.99, "RMSprop smoothing constant")
    rho: float = setting(0.9, "Adadelta decay")

    def __post_init__(self) -> None:
        one_of("name", self.name, OPTIMIZER_NAMES)
        real_in("momentum", self.momentum, low=0, high=1, high_open=True)
        real_in("weight_decay", self.weight_decay, low=0)
        boolean("nesterov", self.nesterov)
        real_in("beta2", self.beta2, low=0, high=1, high_open=True)
        real_in("eps", self.eps, low=0, low_open=True)
        real_in("alpha", self.alpha, low=0, high=1)
        real_in("rho", self.rho, low=0, high=1)
        if self.nesterov and self.name == "sgd" and self.momentum == 0:
            raise SettingError("nesterov", "needs {momentum} > 0: set {momentum}, or turn {nesterov} off")


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

    def _state(self, params: Sequence[Tensor], name: str) -> list[Tensor]:
        buffers = []
        for p in params:
            state = self.state[p]
            if name not in state:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
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


@dataclass(frozen=True)
class ParamGroup:
    """Parameters that share an lr multiplier and weight decay (e.g. BN biases at a larger rate)."""

    params: Sequence[torch.nn.Parameter]
    lr_scale: float = 1.0
    weight_decay: float | None = None   # None: the optimizer config's


class ScheduledOptimizer:
    """A torch optimizer plus the device schedule and step counter that set its hyperparameters.

    Call :meth:`step` after ``backward()``: it copies this step's lr (and momentum) from the
    schedule into the optimizer's tensors, steps, and advances the counter, all on the device.
    Past the end of the schedule the last value is held.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: Tensor, momentum: Tensor | None,
                 lr_scales: Sequence[float]) -> None:
        self.optimizer = optimizer
        self.lr_schedule = lr
        self.momentum_schedule = momentum
        self.lr_scales = list(lr_scales)
        self.counter = torch.zeros((), dtype=torch.long, device=lr.device)
        self._last = len(lr) - 1

    def load_hyperparameters(self) -> None:
        """Copy the current step's values into the optimizer (device ops only)."""
        index = self.counter.clamp(max=self._last).view(1)
        lr = self.lr_schedule.index_select(0, index).squeeze(0)
        momentum = None
        if self.momentum_schedule is not None:
            momentum = self.momentum_schedule.index_select(0, index).squeeze(0)
        for group, scale in zip(self.optimizer.param_groups, self.lr_scales):
            group["lr"].copy_(lr * scale)
            if momentum is not None:
                if "betas" in group:
                    group["betas"][0].copy_(momentum)
                else:
                    group["momentum"].copy_(momentum)

    def step(self) -> None:
        self.load_hyperparameters()
        self.optimizer.step()
        self.counter += 1

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def current_lr(self) -> Tensor:
        """The lr the last step used (a device tensor; reading it on the host syncs)."""
        return self.optimizer.param_groups[0]["lr"]


def build_optimizer(groups: Sequence[ParamGroup], config: OptimizerConfig, lr: Tensor,
                    momentum: Tensor | None = None) -> ScheduledOptimizer:
    """Make the optimizer named in ``config`` over ``groups``, driven by the per-step schedules.

    ``lr`` and ``momentum`` are 1-D tensors on the parameters' device, one value per step;
    ``momentum`` is None unless the policy cycles it (then it overrides ``config.momentum``).
    """
    if momentum is not None and config.name not in _CYCLES_MOMENTUM:
        raise ValueError(
            f"cycle_momentum needs an optimizer with momentum ({', '.join(_CYCLES_MOMENTUM)}), "
            f"not {config.name}: pass --no-cycle-momentum or another --optimizer"
        )
    device = lr.device
    fused = device.type in ("cuda", "cpu")

    def scalar(value: float) -> Tensor:
        return torch.tensor(float(value), dtype=torch.float32, device=device)

    # Initial values by device ops (no host read); ScheduledOptimizer.step overwrites them anyway.
    torch_groups = []
    for g in groups:
        wd = config.weight_decay if g.weight_decay is None else g.weight_decay
        spec: dict[str, Any] = dict(params=list(g.params), lr=(lr[0] * g.lr_scale).to(torch.float32), weight_decay=wd)
        if config.name in ("adam", "adamw") and momentum is not None:
            spec["betas"] = (momentum[0].clone(), scalar(config.beta2))     # cycled: TensorAdam reads them
        elif config.name in ("adam", "adamw"):
            spec["betas"] = (config.momentum, config.beta2)                 # constant: fused Adam takes floats
        elif config.name == "sgd" and momentum is not None:
            spec["momentum"] = momentum[0].clone()
        torch_groups.append(spec)

    # Every group brings its own tensor lr; the defaults given below are floats, since PyTorch's
    # constructors compare a tensor default with 0 on the host.
    name = config.name
    if name == "sgd" and momentum is not None:
        opt: torch.optim.Optimizer = TensorMomentumSGD(torch_groups, lr=scalar(0), momentum=scalar(0),
                                                       nesterov=config.nesterov)
    elif name == "sgd":
        opt = torch.optim.SGD(torch_groups, lr=0.0, momentum=config.momentum, nesterov=config.nesterov,
                              fused=fused)
    elif name in ("adam", "adamw") and momentum is not None:
        opt = TensorAdam(torch_groups, lr=scalar(0), betas=(scalar(0), scalar(0)), eps=config.eps,
                         decoupled=name == "adamw")
    elif name == "adam":
        opt = torch.optim.Adam(torch_groups, lr=0.0, eps=config.eps, fused=fused)
    elif name == "adamw":
        opt = torch.optim.AdamW(torch_groups, lr=0.0, eps=config.eps, fused=fused)
    elif name == "rmsprop":
        opt = TensorRMSprop(torch_groups, lr=scalar(0), alpha=config.alpha, eps=config.eps, momentum=config.momentum)
    elif name == "adagrad":
        opt = torch.optim.Adagrad(torch_groups, lr=0.0, eps=1e-10, fused=fused)
    else:
        opt = TensorAdadelta(torch_groups, lr=scalar(0), rho=config.rho, eps=1e-6)
    return ScheduledOptimizer(opt, lr, momentum, [g.lr_scale for g in groups])
