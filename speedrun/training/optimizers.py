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
* RMSprop / Adadelta / Adagrad: :class:`TensorRMSprop` / :class:`TensorAdadelta` /
  :class:`TensorAdagrad`, since PyTorch's turn a tensor ``lr`` into a float every step (its
  ``capturable`` mode avoids that on CUDA only; fused Adagrad has no CUDA kernel in torch 2.11).

``tests.support.host_sync`` proves the "no sync" part on any device, the CPU included.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from speedrun.parameters import OptimizerConfig, ParamGroup
from speedrun.training.muon import TensorMuon
from speedrun.training.tensor_optimizers import TensorAdadelta, TensorAdagrad, TensorAdam, TensorMomentumSGD, TensorRMSprop

_CYCLES_MOMENTUM = ("sgd", "adam", "adamw")


def merge_equal_groups(groups: Sequence[ParamGroup], apart: Iterable[Tensor] = ()) -> list[ParamGroup]:
    """``groups`` with those of equal hyperparameters joined, in order of first appearance.

    A model names its groups by role (filters, BN shifts, head, stem bias); where two roles get
    the same rate, decay and update they train identically as one group, and one group costs
    fewer launches a step (a fused optimizer and every per-group hook launch once per group).
    A group holding a tensor in ``apart`` stays its own: an extension sets its lr alone.
    """
    apart_ids = {id(t) for t in apart}
    merged: list[ParamGroup] = []
    index_of: dict[tuple, int] = {}
    for group in groups:
        key = (group.lr_scale, group.weight_decay, group.orthogonalize, group.momentum)
        alone = any(id(p) in apart_ids for p in group.params)
        if not alone and key in index_of:
            i = index_of[key]
            merged[i] = dataclasses.replace(merged[i], params=[*merged[i].params, *group.params])
            continue
        if not alone:
            index_of[key] = len(merged)
        merged.append(group)
    return merged


class ScheduledOptimizer:
    """A torch optimizer plus the device schedule and step counter that set its hyperparameters.

    Call :meth:`step` after ``backward()``: it copies this step's lr (and momentum) from the
    schedule into the optimizer's tensors, steps, and advances the counter, all on the device.
    Past the end of the schedule the last value is held.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: Tensor, momentum: Tensor | None,
                 lr_scales: Sequence[float]) -> None:
        self.optimizer = optimizer
        self.lr_schedule = lr               # an extension may edit it in place or replace it (plateau)
        self.momentum_schedule = momentum
        self.lr_scales = list(lr_scales)
        self.counter = torch.zeros((), dtype=torch.long, device=lr.device)
        self._last = len(lr) - 1
        self._scales = torch.tensor(self.lr_scales, dtype=lr.dtype, device=lr.device)
        self._group_lrs = [group["lr"] for group in optimizer.param_groups]
        # The momentum tensors a cycled momentum is copied into (the same value for every group).
        self._group_momenta = [m for group in optimizer.param_groups
                               for m in [group["betas"][0] if "betas" in group else group.get("momentum")]
                               if isinstance(m, Tensor)]
        self._own_lr: dict[int, Tensor] = {}
        self._own_rows: Tensor | None = None       # (steps, groups): the groups' own lrs, where given
        self._own_mask: Tensor | None = None

    def override_group(self, index: int, lr: Tensor) -> None:
        """Give group ``index`` its own per-step lr (absolute, not scaled), e.g. a bias frozen after 3 epochs."""
        if lr.shape != self.lr_schedule.shape or lr.device != self.lr_schedule.device:
            raise ValueError(f"a group's own lr must be like the schedule: {tuple(self.lr_schedule.shape)} "
                             f"on {self.lr_schedule.device}, got {tuple(lr.shape)} on {lr.device}")
        self._own_lr[index] = lr.to(self.lr_schedule.dtype)
        groups = len(self._group_lrs)
        own = torch.zeros((len(lr), groups), dtype=self.lr_schedule.dtype, device=lr.device)
        mask = torch.zeros(groups, dtype=torch.bool, device=lr.device)
        for i, values in self._own_lr.items():
            own[:, i] = values
            mask[i] = True
        self._own_rows, self._own_mask = own, mask

    def load_hyperparameters(self) -> None:
        """Copy the current step's values into the optimizer: device ops only, and as many for
        any number of groups (one row of lrs, then one multi-tensor copy)."""
        index = self.counter.clamp(max=self._last).view(1)
        lrs = self.lr_schedule.index_select(0, index) * self._scales
        if self._own_rows is not None and self._own_mask is not None:
            lrs = torch.where(self._own_mask, self._own_rows.index_select(0, index), lrs)
        torch._foreach_copy_(self._group_lrs, list(lrs.view(-1).unbind()))
        if self.momentum_schedule is not None:
            momentum = self.momentum_schedule.index_select(0, index).squeeze(0)
            torch._foreach_copy_(self._group_momenta, [momentum] * len(self._group_momenta))

    def step(self) -> None:
        self.load_hyperparameters()
        self.optimizer.step()
        self.counter += 1

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def current_lr(self) -> Tensor:
        """The lr the last step used (a device tensor; reading it on the host syncs)."""
        return self.optimizer.param_groups[0]["lr"]


@dataclass(frozen=True)
class _Build:
    """What a builder is given: the settings, the cycled momentum (or None), and the device's ways."""

    config: OptimizerConfig
    momentum: Tensor | None
    fused: bool
    capturable: bool
    device: torch.device

    def scalar(self, value: float = 0.0) -> Tensor:
        return torch.tensor(float(value), dtype=torch.float32, device=self.device)


def _no_options(group: ParamGroup, build: _Build) -> dict[str, Any]:
    return {}


def _adam_betas(group: ParamGroup, build: _Build) -> dict[str, Any]:
    if build.momentum is not None:                       # cycled: TensorAdam reads tensor betas
        return {"betas": (build.momentum[0].clone(), build.scalar(build.config.beta2))}
    return {"betas": (build.config.momentum, build.config.beta2)}   # constant: fused Adam takes floats


def _sgd_momentum(group: ParamGroup, build: _Build) -> dict[str, Any]:
    return {} if build.momentum is None else {"momentum": build.momentum[0].clone()}


def _muon_group(group: ParamGroup, build: _Build) -> dict[str, Any]:
    own = build.config.muon_momentum if group.orthogonalize else build.config.momentum
    return {"orthogonalize": group.orthogonalize, "momentum": own if group.momentum is None else group.momentum}


# Per-group options each optimizer takes beyond params, lr and weight decay.
_GROUP_OPTIONS: dict[str, Callable[[ParamGroup, _Build], dict[str, Any]]] = {
    "sgd": _sgd_momentum, "adam": _adam_betas, "adamw": _adam_betas, "muon": _muon_group,
}


def _sgd(groups: list[dict], b: _Build) -> torch.optim.Optimizer:
    if b.momentum is not None:
        return TensorMomentumSGD(groups, lr=b.scalar(), momentum=b.scalar(), nesterov=b.config.nesterov)
    return torch.optim.SGD(groups, lr=0.0, momentum=b.config.momentum, nesterov=b.config.nesterov, fused=b.fused)


def _adam(decoupled: bool) -> Callable[[list[dict], _Build], torch.optim.Optimizer]:
    def build(groups: list[dict], b: _Build) -> torch.optim.Optimizer:
        if b.momentum is not None:
            return TensorAdam(groups, lr=b.scalar(), betas=(b.scalar(), b.scalar()), eps=b.config.eps,
                              decoupled=decoupled)
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        return cls(groups, lr=0.0, eps=b.config.eps, fused=b.fused, capturable=b.capturable)
    return build


# Every group brings its own tensor lr; the defaults given here are floats where PyTorch's
# constructors compare a default with 0 on the host.
_BUILDERS: dict[str, Callable[[list[dict], _Build], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam(decoupled=False),
    "adamw": _adam(decoupled=True),
    "rmsprop": lambda groups, b: TensorRMSprop(groups, lr=b.scalar(), alpha=b.config.alpha, eps=b.config.eps,
                                               momentum=b.config.momentum),
    "adagrad": lambda groups, b: TensorAdagrad(groups, lr=b.scalar(), eps=1e-10),
    "adadelta": lambda groups, b: TensorAdadelta(groups, lr=b.scalar(), rho=b.config.rho, eps=1e-6),
    "muon": lambda groups, b: TensorMuon(groups, lr=b.scalar(), nesterov=b.config.nesterov,
                                         renormalize=b.config.muon_renormalize,
                                         newton_schulz_steps=b.config.newton_schulz_steps,
                                         batch_same_shapes=b.config.muon_batched,
                                         renormalize_every=b.config.muon_renormalize_every,
                                         fp16_momentum=b.config.muon_fp16_momentum),
}


def build_optimizer(groups: Sequence[ParamGroup], config: OptimizerConfig, lr: Tensor,
                    momentum: Tensor | None = None, *, capturable: bool = False) -> ScheduledOptimizer:
    """Make the optimizer named in ``config`` over ``groups``, driven by the per-step schedules.

    ``lr`` and ``momentum`` are 1-D tensors on the parameters' device, one value per step;
    ``momentum`` is None unless the policy cycles it (then it overrides ``config.momentum``).
    ``capturable``: its step will be captured in a CUDA graph (PyTorch's Adam refuses capture
    without its ``capturable`` flag; the others here need nothing).
    """
    if momentum is not None and config.name not in _CYCLES_MOMENTUM:
        raise ValueError(
            f"cycle_momentum needs an optimizer with momentum ({', '.join(_CYCLES_MOMENTUM)}), "
            f"not {config.name}: pass --no-cycle-momentum or another --optimizer"
        )
    if config.name != "muon" and any(g.orthogonalize for g in groups):
        raise ValueError("orthogonalized parameter groups need the muon optimizer")
    build = _Build(config, momentum, lr.device.type in ("cuda", "cpu"), capturable, lr.device)
    # Initial values by device ops (no host read); ScheduledOptimizer.step overwrites them anyway.
    torch_groups = [{"params": list(g.params), "lr": (lr[0] * g.lr_scale).to(torch.float32),
                     "weight_decay": config.weight_decay if g.weight_decay is None else g.weight_decay,
                     **_GROUP_OPTIONS.get(config.name, _no_options)(g, build)} for g in groups]
    opt = _BUILDERS[config.name](torch_groups, build)
    return ScheduledOptimizer(opt, lr, momentum, [g.lr_scale for g in groups])
