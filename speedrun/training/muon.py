"""Muon for the convolution filters, momentum SGD for the rest, one optimizer driven by the device schedule.

Muon (Keller Jordan, 2024) replaces a filter's momentum update by the nearest semi-orthogonal
matrix: the update, reshaped to ``(out_channels, -1)``, is pushed towards ``U V^T`` of its SVD
by a few Newton-Schulz iterations. This is the form airbench94_muon uses, written here for the
device schedule (a tensor lr, no host read):

* ``b = m * b + g``; the direction is ``g + m * b`` with Nesterov, else ``b``;
* the filter is renormalized first, ``p *= sqrt(out_channels) / ||p||`` (``renormalize``), so
  its scale stays fixed and only its direction learns; ``renormalize_every`` k does it on the
  1st, (k+1)-th, ... step only (the record's saving: the norm drifts little in a few steps);
  the count is a Python int, as the host calls every step, so no device value is read;
* ``p -= lr * NS(direction)``, where :func:`newton_schulz` runs the quintic iteration with the
  coefficients ``(3.4445, -4.7750, 2.0315)``: they maximize the slope at zero, so a few steps
  bring every singular value into roughly ``[0.5, 1.5]`` rather than exactly 1, which trains as
  well and costs fewer steps.

Groups marked ``orthogonalize`` get that update; the others (norm biases, the head, the
whitening bias) get PyTorch's momentum SGD with L2 weight decay, at their own momentum.
Newton-Schulz runs in bfloat16 on CUDA (tensor cores) and in float32 elsewhere.

With ``batch_same_shapes`` (the default) the filters of one shape are stacked and orthogonalized
by one batched iteration, and the renormalization and the update are one foreach op each over
all filters: the same arithmetic per filter in a fraction of the launches (fast94-muon's six
filters have four shapes). Without it every filter is done on its own, as airbench94_muon does.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from speedrun.training.tensor_optimizers import _TensorHyperparameterOptimizer

NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrix: Tensor, steps: int, dtype: torch.dtype | None = None, eps: float = 1e-7) -> Tensor:
    """The quintic Newton-Schulz iteration towards the orthogonal factor of ``matrix``: a 2-D
    matrix, or a stack of same-shape matrices (3-D), each orthogonalized on its own.

    Computed in ``dtype`` (default: the matrix's), iterating on the smaller of the two Gram
    matrices so the products stay small; returned in the matrix's dtype.
    """
    if matrix.dim() not in (2, 3):
        raise ValueError(f"newton_schulz takes a matrix or a stack of matrices, got shape {tuple(matrix.shape)}")
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrix.to(dtype or matrix.dtype)
    # Each matrix's top singular value is now at most 1.
    x = x / ((x.norm() if x.dim() == 2 else x.norm(dim=(1, 2), keepdim=True)) + eps)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    if tall:
        x = x.mT
    return x.to(matrix.dtype)


def orthogonalized(directions: Sequence[Tensor], steps: int, dtype: torch.dtype) -> list[Tensor]:
    """Every direction's Newton-Schulz update, as an ``(out_channels, -1)`` matrix, shaped back;
    directions of one shape are stacked and iterated together."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, d in enumerate(directions):
        by_shape.setdefault(tuple(d.shape), []).append(i)
    out: list[Tensor] = list(directions)
    for shape, members in by_shape.items():
        if len(members) == 1:
            d = directions[members[0]]
            out[members[0]] = newton_schulz(d.reshape(len(d), -1), steps, dtype).view(shape)
            continue
        stacked = torch.stack([directions[i].reshape(shape[0], -1) for i in members])
        for i, update in zip(members, newton_schulz(stacked, steps, dtype).unbind(0)):
            out[i] = update.view(shape)
    return out


class TensorMuon(_TensorHyperparameterOptimizer):
    """Muon on the groups marked ``orthogonalize``, momentum SGD on the others (module docstring).

    Every group has a tensor ``lr`` (the schedule's), a float ``momentum``, ``nesterov`` and
    ``weight_decay`` (L2, SGD groups only); Muon groups also ``renormalize``,
    ``newton_schulz_steps`` and ``fp16_momentum`` (their momentum buffers kept in float16).
    """

    def __init__(self, params: Iterable[Any], lr: Tensor, momentum: float = 0.6, nesterov: bool = True,
                 weight_decay: float = 0.0, orthogonalize: bool = False, renormalize: bool = True,
                 newton_schulz_steps: int = 3, batch_same_shapes: bool = True, renormalize_every: int = 1,
                 fp16_momentum: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      orthogonalize=orthogonalize, renormalize=renormalize,
                                      newton_schulz_steps=newton_schulz_steps, batch_same_shapes=batch_same_shapes,
                                      renormalize_every=renormalize_every, fp16_momentum=fp16_momentum))
        self.steps_taken = 0

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        self.steps_taken += 1
        for group, params, grads in self._groups_to_step():
            momentum, lr = group["momentum"], group["lr"]
            if not group["orthogonalize"]:
                grads = self._with_l2(grads, params, group["weight_decay"])
            # fp16 filter buffers (the public record's) halve their memory traffic; Newton-Schulz
            # normalizes the direction, so their rounding barely reaches the update.
            half = group["orthogonalize"] and group["fp16_momentum"]
            bufs = self._state(params, "momentum_buffer", torch.float16 if half else None)
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads)
            directions = (list(torch._foreach_add(grads, torch._foreach_mul(bufs, momentum))) if group["nesterov"]
                          else bufs)
            if not group["orthogonalize"]:
                torch._foreach_sub_(params, torch._foreach_mul(directions, lr))
                continue
            dtype = torch.bfloat16 if params[0].is_cuda else torch.float32
            renormalize = group["renormalize"] and (self.steps_taken - 1) % group["renormalize_every"] == 0
            if group["batch_same_shapes"]:
                if renormalize:
                    scales = torch._foreach_reciprocal(torch._foreach_norm(params))
                    torch._foreach_mul_(scales, [math.sqrt(p.shape[0]) for p in params])
                    torch._foreach_mul_(params, scales)
                updates = orthogonalized(directions, group["newton_schulz_steps"], dtype)
                torch._foreach_sub_(params, torch._foreach_mul(updates, lr))
                continue
            for p, d in zip(params, directions):
                if renormalize:
                    p.mul_(math.sqrt(p.shape[0]) / p.norm())
                update = newton_schulz(d.reshape(len(d), -1), group["newton_schulz_steps"], dtype).view_as(d)
                p.sub_(update * lr)
