"""The training batch in one fused pass (the Triton kernel in ``speedrun.kernels``), and its spec.

:func:`augment_normalize_reference` is the specification: speedrun's own crop, flip and cutout
(:func:`~speedrun.data.augment.apply_augment`) and :func:`~speedrun.data.augment.normalize` of
``dataset_u8[indices]``. :func:`augment_normalize_fused` gives the same result from one launch of
the kernel, bit for bit, by looking each uint8 value up in :func:`normalize_lut`.
:func:`augment_normalize` picks the kernel for CUDA data when Triton imports, else the
reference. The training loop calls it only with ``--input-kernel`` (kernels/README.md's
keep-or-drop rule: a kernel is used once a GPU benchmark shows it faster).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from speedrun.data.augment import AugmentConfig, AugmentParams, apply_augment, normalize
from speedrun.kernels.augment_normalize import augment_normalize_triton
from speedrun.kernels.triton_support import should_use_triton

_UINT8_LEVELS = 256


def augment_normalize_reference(dataset_u8: Tensor, indices: Tensor, params: AugmentParams, cfg: AugmentConfig,
                                mean: Sequence[float], std: Sequence[float],
                                dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """The spec: ``apply_augment`` then ``normalize`` of ``dataset_u8[indices]``; channels_last, in ``dtype``."""
    batch = apply_augment(dataset_u8[indices], params, cfg)
    return normalize(batch, mean, std, dtype=dtype, channels_last=True)


def augment_normalize_fused(dataset_u8: Tensor, indices: Tensor, params: AugmentParams, cfg: AugmentConfig,
                            mean: Sequence[float], std: Sequence[float],
                            dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """The reference's result from one launch of the Triton kernel (CUDA, or the CPU interpreter)."""
    if len(mean) != dataset_u8.shape[1] or len(std) != dataset_u8.shape[1]:
        raise ValueError(f"need one mean and std per channel ({dataset_u8.shape[1]}), got {len(mean)} and {len(std)}")
    lut = normalize_lut(mean, std, dtype=dtype, device=dataset_u8.device)
    return augment_normalize_triton(dataset_u8, indices, params, lut, crop_padding=cfg.crop_padding,
                                    reflect=cfg.pad_mode == "reflect", flip=cfg.flip, cutout_size=cfg.cutout_size,
                                    dtype=dtype)


def augment_normalize(dataset_u8: Tensor, indices: Tensor, params: AugmentParams, cfg: AugmentConfig,
                      mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """The fused kernel for CUDA data when Triton imports, else the reference: the same result."""
    if should_use_triton(dataset_u8):
        return augment_normalize_fused(dataset_u8, indices, params, cfg, mean, std, dtype)
    return augment_normalize_reference(dataset_u8, indices, params, cfg, mean, std, dtype)


def normalize_lut(mean: Sequence[float], std: Sequence[float], *, dtype: torch.dtype,
                  device: torch.device | str) -> Tensor:
    """``(C, 256)`` table: row c holds ``normalize`` of uint8 values 0..255 in channel c.

    Built by calling ``normalize`` itself, so looking a pixel up equals normalizing it exactly.
    Cached per (mean, std, dtype, device); the returned tensor is shared, so do not modify it.
    """
    return _cached_lut(tuple(float(m) for m in mean), tuple(float(s) for s in std), dtype, torch.device(device))


@functools.lru_cache(maxsize=16)
def _cached_lut(mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    channels = len(mean)
    levels = torch.arange(_UINT8_LEVELS, dtype=torch.uint8, device=device)
    ramp = levels.expand(channels, _UINT8_LEVELS).reshape(1, channels, 1, _UINT8_LEVELS)
    table = normalize(ramp, mean, std, dtype=dtype, channels_last=False)
    return table.reshape(channels, _UINT8_LEVELS).contiguous()
