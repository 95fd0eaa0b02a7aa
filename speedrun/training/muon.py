"""Muon for the convolution filters, momentum SGD for the rest, one optimizer driven by the device schedule.

Muon (Keller Jordan, 2024) replaces a filter's momentum update by the nearest semi-orthogonal
matrix: the update, reshaped to ``(out_channels, -1)``, is pushed towards ``U V^T`` of its SVD
by a few Newton-Schulz iterations. This is the form airbench94_muon uses, written here for the
device schedule (a tensor lr, no host read):

* ``b = m * b + g``; the direction is ``g + m * b`` with Nesterov, else ``b``;
* the filter is renormalized first, ``p *= sqrt(out_channels) / ||p||`` (``renormalize``), so
  its scale stays fixed and only its direction learns;
* ``p -= lr * NS(direction)``, where :func:`newton_schulz` runs the quintic iteration with the
  coefficients ``(3.4445, -4.7750, 2.0315)``: they maximize the slope at zero, so a few steps
  bring every singular value into roughly ``[0.5, 1.5]`` rather than exactly 1, which trains as
  well and costs fewer steps.

Groups marked ``orthogonalize`` get that update; the others (norm biases, the head, the
whitening bias) get PyTorch's momentum SGD with L2 weight decay, at their own momentum.
Newton-Schulz runs in bfloat16 on CUDA (tensor cores) and in float32 elsewhere.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from speedrun.training.tensor_optimizers import _TensorHyperparameterOptimizer

NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrix: Tensor, steps: int, dtype: torch.dtype | None = None, eps: float = 1e-7) -> Tensor:
    """The quintic Newton-Schulz iteration towards the orthogonal factor of ``matrix`` (2-D).

    Computed in ``dtype`` (default: the matrix's), iterating on the smaller of the two Gram
    matrices so the products stay small; returned in the matrix's dtype.
    """
    if matrix.dim() != 2:
        raise ValueError(f"newton_schulz takes a matrix, got shape {tuple(matrix.shape)}")
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrix.to(dtype or matrix.dtype)
    x = x / (x.norm() + eps)                      # the top singular value is now at most 1
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    if tall:
        x = x.T
    return x.to(matrix.dtype)


class TensorMuon(_TensorHyperparameterOptimizer):
    """Muon on the groups marked ``orthogonalize``, momentum SGD on the others (module docstring).

    Every group has a tensor ``lr`` (the schedule's), a float ``momentum``, ``nesterov`` and
    ``weight_decay`` (L2, SGD groups only); Muon groups also ``renormalize`` and
    ``newton_schulz_steps``.
    """

    def __init__(self, params: Iterable[Any], lr: Tensor, momentum: float = 0.6, nesterov: bool = True,
                 weight_decay: float = 0.0, orthogonalize: bool = False, renormalize: bool = True,
                 newton_schulz_steps: int = 3) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      orthogonalize=orthogonalize, renormalize=renormalize,
                                      newton_schulz_steps=newton_schulz_steps))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group, params, grads in self._groups_to_step():
            momentum, lr = group["momentum"], group["lr"]
            if not group["orthogonalize"]:
                grads = self._with_l2(grads, params, group["weight_decay"])
            bufs = self._state(params, "momentum_buffer")
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads)
            directions = (list(torch._foreach_add(grads, torch._foreach_mul(bufs, momentum))) if group["nesterov"]
                          else bufs)
            if not group["orthogonalize"]:
                torch._foreach_sub_(params, torch._foreach_mul(directions, lr))
                continue
            dtype = torch.bfloat16 if params[0].is_cuda else torch.float32
            for p, d in zip(params, directions):
                if group["renormalize"]:
                    p.mul_(math.sqrt(p.shape[0]) / p.norm())
                update = newton_schulz(d.reshape(len(d), -1), group["newton_schulz_steps"], dtype).view_as(d)
                p.sub_(update * lr)
