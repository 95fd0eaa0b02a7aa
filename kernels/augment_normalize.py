"""One pass from the uint8 dataset on the device to the normalized, augmented training batch.

Why: the pure-torch path (:func:`augment_normalize_reference`) gathers the batch, builds crop
indices, gathers again, masks, converts and normalizes: several kernel launches and several
round trips through memory for a few megabytes. The Triton kernel reads each source byte once
and writes each output element once, with the padding done by index arithmetic.

The reference *is* the spec: ``speedrun.data.augment.apply_augment`` then ``normalize`` on
``dataset_u8[indices]``. The kernel equals it bit for bit in every dtype, because it maps each
uint8 value through a table of ``normalize``'s own outputs (:func:`normalize_lut`) instead of
re-doing the float arithmetic (where a fused multiply-add would round differently).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from .triton_support import should_use_triton, triton_kernel
from speedrun.data.augment import AugmentConfig, AugmentParams, apply_augment, normalize

__all__ = [
    "augment_normalize",
    "augment_normalize_reference",
    "augment_normalize_triton",
    "normalize_lut",
]

_PARAM_NAMES = ("crop_y", "crop_x", "flip", "cutout_y", "cutout_x")
_UINT8_LEVELS = 256


def augment_normalize_reference(
    dataset_u8: Tensor,
    indices: Tensor,
    params: AugmentParams,
    cfg: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """The spec: crop, flip, cutout (``apply_augment``) and ``normalize`` of ``dataset_u8[indices]``.

    Returns a new channels_last ``(B, C, H, W)`` tensor in ``dtype``.
    """
    batch = apply_augment(dataset_u8[indices], params, cfg)
    return normalize(batch, mean, std, dtype=dtype, channels_last=True)


def augment_normalize_triton(
    dataset_u8: Tensor,
    indices: Tensor,
    params: AugmentParams,
    cfg: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """The reference's result from one Triton launch (any dataset strides; indices may be < 0).

    Indices must lie in ``[-N, N)``: they are not checked, as checking would sync with the device.
    Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1``.
    """
    _check_inputs(dataset_u8, indices, params, cfg, mean, std)
    from ._augment_normalize_body import augment_normalize_body

    num_images, channels, height, width = dataset_u8.shape
    batch = indices.shape[0]
    out = torch.empty(
        (batch, channels, height, width), dtype=dtype, device=dataset_u8.device, memory_format=torch.channels_last
    )
    if batch == 0:
        return out
    lut = normalize_lut(mean, std, dtype=dtype, device=dataset_u8.device)
    kernel = triton_kernel(augment_normalize_body)
    kernel[(batch,)](
        dataset_u8, indices, params.crop_y, params.crop_x, params.flip.view(torch.uint8),
        params.cutout_y, params.cutout_x, lut, out,
        num_images,
        *dataset_u8.stride(),
        *out.stride(),
        CHANNELS=channels, HEIGHT=height, WIDTH=width,
        PADDING=cfg.crop_padding, REFLECT=cfg.pad_mode == "reflect", FLIP=cfg.flip, CUTOUT=cfg.cutout_size,
        PIXEL_BLOCK=_next_power_of_2(height * width), CHANNEL_BLOCK=_next_power_of_2(channels),
        num_warps=4,
    )
    return out


def augment_normalize(
    dataset_u8: Tensor,
    indices: Tensor,
    params: AugmentParams,
    cfg: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """The Triton kernel for CUDA data when Triton imports, else the reference: same result."""
    if should_use_triton(dataset_u8):
        return augment_normalize_triton(dataset_u8, indices, params, cfg, mean, std, dtype)
    return augment_normalize_reference(dataset_u8, indices, params, cfg, mean, std, dtype)


def normalize_lut(
    mean: Sequence[float], std: Sequence[float], *, dtype: torch.dtype, device: torch.device | str
) -> Tensor:
    """``(C, 256)`` table: row c holds ``normalize`` of uint8 values 0..255 in channel c.

    Built by calling ``normalize`` itself, so looking a pixel up equals normalizing it exactly.
    Cached per (mean, std, dtype, device); the returned tensor is shared, so do not modify it.
    """
    key_mean = tuple(float(m) for m in mean)
    key_std = tuple(float(s) for s in std)
    return _cached_lut(key_mean, key_std, dtype, torch.device(device))


@functools.lru_cache(maxsize=16)
def _cached_lut(mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    channels = len(mean)
    levels = torch.arange(_UINT8_LEVELS, dtype=torch.uint8, device=device)
    ramp = levels.expand(channels, _UINT8_LEVELS).reshape(1, channels, 1, _UINT8_LEVELS)
    table = normalize(ramp, mean, std, dtype=dtype, channels_last=False)
    return table.reshape(channels, _UINT8_LEVELS).contiguous()


def _check_inputs(
    dataset_u8: Tensor,
    indices: Tensor,
    params: AugmentParams,
    cfg: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
) -> None:
    """Metadata checks only (shapes, dtypes, devices): they never wait for the device."""
    if dataset_u8.dtype != torch.uint8 or dataset_u8.dim() != 4:
        raise ValueError(f"dataset_u8 must be uint8 (N, C, H, W), got {dataset_u8.dtype} {tuple(dataset_u8.shape)}")
    if indices.dim() != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"indices must be a 1-D integer tensor, got {indices.dtype} {tuple(indices.shape)}")
    batch = indices.shape[0]
    tensors = {"indices": indices, **{name: getattr(params, name) for name in _PARAM_NAMES}}
    for name, tensor in tensors.items():
        if tensor.device != dataset_u8.device:
            raise ValueError(f"{name} is on {tensor.device}, the dataset on {dataset_u8.device}")
        if tensor.shape != (batch,):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected ({batch},) like indices")
    if params.flip.dtype != torch.bool:
        raise ValueError(f"AugmentParams.flip must be bool, got {params.flip.dtype}")
    channels, height, width = dataset_u8.shape[1:]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"need one mean and std per channel ({channels}), got {len(mean)} and {len(std)}")
    if cfg.pad_mode == "reflect" and cfg.crop_padding >= min(height, width):
        raise ValueError(f"reflect padding {cfg.crop_padding} must be smaller than the image ({height}x{width})")


def _next_power_of_2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()
