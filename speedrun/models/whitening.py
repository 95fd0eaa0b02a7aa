"""Patch whitening: a first convolution computed from the data, so its outputs start decorrelated.

Used by fast94's stem (:mod:`speedrun.models.fast_net`), computed once per run on the device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from speedrun.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize


def sample_images(images: Tensor, count: int, seed: int) -> Tensor:
    """``count`` distinct images (all when there are fewer), chosen by a generator seeded with ``seed``."""
    if count >= len(images):
        return images
    gen = torch.Generator(device=images.device).manual_seed(seed)
    return images[torch.randperm(len(images), generator=gen, device=images.device)[:count]]


WHITEN_METHODS = ("eigh", "svd")


@torch.no_grad()
def patch_whitening(images_u8: Tensor, patch: int, eps: float, chunk: int = 1000,
                    method: str = "eigh") -> tuple[Tensor, Tensor, Tensor]:
    """Whitening filters for every ``patch`` x ``patch`` patch of the normalised uint8 NCHW images.

    Returns ``(weight, bias, eigenvalues)``: a conv weight ``(2D, C, patch, patch)`` holding the
    ``D = C * patch^2`` filters ``v_k / sqrt(lam_k + eps)`` (largest eigenvalue first) and then
    their negatives; a bias ``-weight @ mean`` that centres the outputs; and the eigenvalues
    ``lam`` (descending, float64) of the patches' covariance. On these patches the first D outputs
    have zero mean and covariance ``diag(lam / (lam + eps))``.

    ``method="eigh"`` accumulates the covariance in float64, ``chunk`` images at a time, and
    decomposes it. ``method="svd"`` (the public record's) takes the float32 SVD of the centred
    patch matrix itself: the same directions, with no float64 arithmetic, which GPUs run slowly,
    at the cost of holding every patch at once (meant for a few hundred images).
    """
    if method not in WHITEN_METHODS:
        raise ValueError(f"method must be one of {', '.join(WHITEN_METHODS)}, got {method!r}")
    channels = images_u8.shape[1]
    dim = channels * patch * patch
    if method == "svd":
        rows = torch.cat([_patch_rows(images_u8[start:start + chunk], patch, torch.float32)
                          for start in range(0, len(images_u8), chunk)])
        mean = rows.mean(0)
        _, singular, vh = torch.linalg.svd(rows - mean, full_matrices=False)
        eigenvalues, eigenvectors, mean = (singular.double() ** 2 / len(rows)), vh.T.double(), mean.double()
    else:
        total = torch.zeros(dim, dtype=torch.float64, device=images_u8.device)
        outer = torch.zeros(dim, dim, dtype=torch.float64, device=images_u8.device)
        count = 0
        for start in range(0, len(images_u8), chunk):
            rows = _patch_rows(images_u8[start:start + chunk], patch, torch.float64)
            total += rows.sum(0)
            outer += rows.T @ rows
            count += rows.shape[0]
        mean = total / count
        eigenvalues, eigenvectors = torch.linalg.eigh(outer / count - torch.outer(mean, mean))     # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps).unsqueeze(1)   # row k: v_k / sqrt(lam_k + eps)
    both = torch.cat([filters, -filters])
    bias = -(both @ mean)
    return both.float().view(2 * dim, channels, patch, patch), bias.float(), eigenvalues


def _patch_rows(images_u8: Tensor, patch: int, dtype: torch.dtype) -> Tensor:
    """Every patch of the normalised images, one row each, its numbers ordered as (C, kh, kw)."""
    x = normalize(images_u8, CIFAR10_MEAN, CIFAR10_STD, channels_last=False)
    cols = F.unfold(x.to(dtype), patch)                       # (B, D, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])
