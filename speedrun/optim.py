"""Optimizers driven by a per-step schedule held on the device.

The learning rate (and the momentum, or Adam's beta1, where the policy cycles it) of every step
is precomputed as a device tensor; a device-side step counter picks each step's value and
copies it into the optimizer's tensor hyperparameters. No step reads anything back to the
host, and compiled code sees tensors rather than changing Python floats, so nothing recompiles.

PyTorch's SGD takes its momentum as a Python float only, so when a schedule cycles momentum
SGD runs as :class:`TensorMomentumSGD` (same update rule, momentum read from a tensor);
otherwise it is ``torch.optim.SGD`` with ``fused=True``. Adam and AdamW are fused with tensor
``lr`` and ``betas``; RMSprop, Adagrad and Adadelta take a tensor ``lr`` (no cycled momentum).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
_CYCLES_MOMENTUM = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class OptimizerConfig:
    """Everything but the learning rate, which the schedule supplies each step."""

    name: str = "sgd"
    momentum: float = 0.9            # SGD momentum / RMSprop momentum / Adam beta1
    nesterov: bool = True
    weight_decay: float = 5e-4
    beta2: float = 0.999
    eps: float = 1e-8
    alpha: float = 0.99              # RMSprop smoothing
    rho: float = 0.9                 # Adadelta decay

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZER_NAMES:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, got {self.name!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.nesterov and self.name == "sgd" and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0: set --momentum or --no-nesterov")


class TensorMomentumSGD(torch.optim.Optimizer):
    """SGD with momentum, Nesterov and L2 weight decay, reading ``lr`` and ``momentum`` from tensors.

    The update is PyTorch's SGD with dampening 0: ``g += wd * p``; ``b = m * b + g`` (b starts
    at zero, which makes the first step ``b = g`` exactly as PyTorch does); the step direction
    is ``g + m * b`` with Nesterov, else ``b``; ``p -= lr * direction``. Multi-tensor (foreach)
    ops keep it to a few kernel launches in eager mode, and compilers fuse it further.
    """

    def __init__(self, params: Iterable[Any], lr: Tensor, momentum: Tensor, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            momentum, lr = group["momentum"], group["lr"]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads)
            if group["nesterov"]:
                direction = torch._foreach_add(grads, torch._foreach_mul(bufs, momentum))
            else:
                direction = bufs
            torch._foreach_sub_(params, torch._foreach_mul(direction, lr))


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

    first_momentum = float(momentum[0]) if momentum is not None else config.momentum
    torch_groups = []
    for g in groups:
        wd = config.weight_decay if g.weight_decay is None else g.weight_decay
        spec: dict[str, Any] = dict(params=list(g.params), lr=scalar(float(lr[0]) * g.lr_scale), weight_decay=wd)
        if config.name in ("adam", "adamw"):
            spec["betas"] = (scalar(first_momentum), scalar(config.beta2))
        elif config.name == "sgd" and momentum is not None:
            spec["momentum"] = scalar(first_momentum)
        torch_groups.append(spec)

    name = config.name
    if name == "sgd" and momentum is not None:
        opt: torch.optim.Optimizer = TensorMomentumSGD(torch_groups, lr=scalar(0), momentum=scalar(0),
                                                       nesterov=config.nesterov)
    elif name == "sgd":
        opt = torch.optim.SGD(torch_groups, lr=scalar(0), momentum=config.momentum, nesterov=config.nesterov,
                              fused=fused)
    elif name == "adam":
        opt = torch.optim.Adam(torch_groups, lr=scalar(0), eps=config.eps, fused=fused)
    elif name == "adamw":
        opt = torch.optim.AdamW(torch_groups, lr=scalar(0), eps=config.eps, fused=fused)
    elif name == "rmsprop":
        opt = torch.optim.RMSprop(torch_groups, lr=scalar(0), alpha=config.alpha, eps=config.eps,
                                  momentum=config.momentum, foreach=True)
    elif name == "adagrad":
        opt = torch.optim.Adagrad(torch_groups, lr=scalar(0), eps=1e-10, fused=fused)
    else:
        opt = torch.optim.Adadelta(torch_groups, lr=scalar(0), rho=config.rho, eps=1e-6, foreach=True)
    return ScheduledOptimizer(opt, lr, momentum, [g.lr_scale for g in groups])
