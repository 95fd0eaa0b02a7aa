"""Test accuracy of a model under test-time augmentation, on the device and without a host sync.

Selective TTA (``tta="selective"``, the public record's): one plain pass over a batch, then the
multi views for its least confident ``share`` only (the smallest margin between the top two
logits), whose plain logits are kept as the multi views' own plain view. The images a plain pass
is sure of rarely change their answer under more views, so most of multi's gain comes at a
fraction of its cost. The share is a count per evaluation batch (``ceil(share * batch)``), so
every shape is static and is compiled in the rehearsal.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from speedrun.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from speedrun.training.precision import autocast_for


def tta_views(x: Tensor, mode: str) -> list[tuple[float, Tensor]]:
    """Weighted views of a normalized batch for test-time augmentation.

    "flip": the image and its mirror, equally weighted. "multi": those two at weight 1/4
    each, plus the mirror pair of two 1-pixel diagonal shifts (reflect-padded) at 1/8 each.
    """
    if mode == "none":
        return [(1.0, x)]
    views = [(0.5, x), (0.5, x.flip(-1))]
    if mode == "flip":
        return [(wt, _like(v, x)) for wt, v in views]
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]
    views = [(0.5 * wt, v) for wt, v in views] + [(0.125, v) for s in shifted for v in (s, s.flip(-1))]
    return [(wt, _like(v, x)) for wt, v in views]


def _like(view: Tensor, x: Tensor) -> Tensor:
    """``view`` with ``x``'s memory layout: a compiled model with static shapes sees one stride
    pattern for every view (a sliced view's strides would compile a second graph)."""
    layout = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
    return view.contiguous(memory_format=layout)


@torch.no_grad()
def evaluate(model: Callable[[Tensor], Tensor], images: Tensor, labels: Tensor, *, batch_size: int,
             tta: str = "flip", amp_dtype: str = "bf16", tta_share: float = 0.1) -> Tensor:
    """Test accuracy as a device scalar (no sync), from the weighted logits of the ``tta`` views."""
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), batch_size):
        logits = predict(model, images[start:start + batch_size], tta, amp_dtype, tta_share)
        correct += (logits.argmax(1) == labels[start:start + batch_size]).sum()
    return correct.float() / len(images)


@torch.no_grad()
def predict(model: Callable[[Tensor], Tensor], images_u8: Tensor, tta: str = "flip",
            amp_dtype: str = "bf16", tta_share: float = 0.1) -> Tensor:
    """Float32 logits of a uint8 batch under the ``tta`` views (used by ensembles too)."""
    x = normalize(images_u8, CIFAR10_MEAN, CIFAR10_STD)
    with autocast_for(images_u8.device, amp_dtype):
        if tta == "selective":
            return _selective(model, x, tta_share)
        views = tta_views(x, tta)
        logits = views[0][0] * model(views[0][1]).float()
        for weight, view in views[1:]:
            logits = logits + weight * model(view).float()
        return logits


def selected_count(batch: int, share: float) -> int:
    """How many of a batch of ``batch`` selective TTA gives every view: ``ceil(share * batch)``."""
    return min(batch, max(1, math.ceil(round(share * batch, 9))))


def _selective(model: Callable[[Tensor], Tensor], x: Tensor, share: float) -> Tensor:
    plain = model(x).float()
    top2 = plain.topk(2, dim=1).values
    unsure = (top2[:, 0] - top2[:, 1]).topk(selected_count(len(x), share), largest=False).indices
    views = tta_views(_like(x[unsure], x), "multi")
    logits = views[0][0] * plain[unsure]          # the plain view, already computed
    for weight, view in views[1:]:
        logits = logits + weight * model(view).float()
    return plain.index_copy(0, unsure, logits)
