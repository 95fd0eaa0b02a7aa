"""Test accuracy of a model under test-time augmentation, on the device and without a host sync."""
from __future__ import annotations

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
             tta: str = "flip", amp_dtype: str = "bf16") -> Tensor:
    """Test accuracy as a device scalar (no sync), from the weighted logits of the ``tta`` views."""
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), batch_size):
        logits = predict(model, images[start:start + batch_size], tta, amp_dtype)
        correct += (logits.argmax(1) == labels[start:start + batch_size]).sum()
    return correct.float() / len(images)


@torch.no_grad()
def predict(model: Callable[[Tensor], Tensor], images_u8: Tensor, tta: str = "flip",
            amp_dtype: str = "bf16") -> Tensor:
    """Float32 logits of a uint8 batch under the ``tta`` views (used by ensembles too)."""
    x = normalize(images_u8, CIFAR10_MEAN, CIFAR10_STD)
    with autocast_for(images_u8.device, amp_dtype):
        views = tta_views(x, tta)
        logits = views[0][0] * model(views[0][1]).float()
        for weight, view in views[1:]:
            logits = logits + weight * model(view).float()
        return logits
