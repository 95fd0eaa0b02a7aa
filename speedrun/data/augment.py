"""Batched, device-side CIFAR-10 augmentation: random crop, horizontal flip, cutout, colour jitter.

The whole dataset lives on the device as uint8 NCHW, so augmentation runs on whole batches
with index arithmetic and masks: no per-image Python loop and no host sync. Sampling is kept
apart from applying so that a fused kernel (or a recipe with its own flip schedule) can reuse
the exact same random draws; a seeded ``torch.Generator`` makes every batch reproducible.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from speedrun.settings import check, setting

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "AugmentConfig",
    "AugmentParams",
    "apply_augment",
    "augment_batch",
    "batch_order",
    "iterate_batches",
    "jitter_colour",
    "normalize",
    "sample_augment_params",
]

# Per-channel statistics of the CIFAR-10 training set, in 0..1 units (tuples: immutable).
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

PAD_MODES = ("reflect", "zeros")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and how strongly; each has a value that switches it off."""

    crop_padding: int = setting(4, "random-crop padding in pixels; 0 disables", low=0, high=32)
    pad_mode: str = setting("reflect", "what the crop sees beyond the border", choices=PAD_MODES)
    flip: bool = setting(True, "random horizontal flip with p=1/2")
    cutout_size: int = setting(8, "side of the zeroed cutout square; 0 disables", flag="--cutout", low=0, high=32)
    brightness: float = setting(0.0, "colour jitter: each image's normalized pixels shifted by a uniform draw in "
                                     "+-this (the public record's 0.14); 0 disables", low=0, high=10)
    contrast: float = setting(0.0, "colour jitter: each image's normalized pixels then scaled by 1 + a uniform "
                                   "draw in +-this (the record's 0.13); 0 disables", low=0, high=1, high_open=True)

    def __post_init__(self) -> None:
        check(self)

    @property
    def jitter(self) -> bool:
        """Whether colour jitter runs (it draws two more numbers per image when it does)."""
        return self.brightness > 0 or self.contrast > 0


@dataclass(frozen=True)
class AugmentParams:
    """The random draws for one batch: int64/bool tensors of shape (B,), all on one device.

    Kept separate from the pixels so a fused kernel can reproduce :func:`apply_augment` exactly.
    """

    crop_y: Tensor  # row offset into the padded image, in [0, 2*crop_padding]
    crop_x: Tensor  # column offset into the padded image, in [0, 2*crop_padding]
    flip: Tensor  # bool: mirror this image horizontally (after the crop)
    cutout_y: Tensor  # top row of the unclipped cutout window (= centre - size//2; may be < 0)
    cutout_x: Tensor  # left column of the unclipped cutout window
    brightness: Tensor | None = None  # float32 u in [0, 1): adds (2u - 1) x the config's brightness (jitter on only)
    contrast: Tensor | None = None  # float32 u in [0, 1): multiplies by 1 + (2u - 1) x the config's contrast


def sample_augment_params(
    batch_size: int,
    cfg: AugmentConfig,
    generator: torch.Generator,
    *,
    image_size: int = 32,
    device: torch.device | str | None = None,
) -> AugmentParams:
    """Draw one batch of augmentation parameters from ``generator``.

    Draws happen on the generator's device (then move to ``device`` if that differs, which lets a
    CPU generator give identical batches on any hardware). All five draws are always made, in a
    fixed order, so switching one augmentation off does not reshuffle the others. Padding 0 gives
    offsets 0 and flip off gives an all-False mask; cutout corners are drawn even when unused.
    Colour jitter's two draws per image come after them, and only when it is on.
    """
    _check_padding(cfg, image_size, image_size)
    source = generator.device

    def draw(high: int) -> Tensor:
        return torch.randint(0, high, (batch_size,), generator=generator, device=source, dtype=torch.int64)

    span = 2 * cfg.crop_padding + 1
    crop_y, crop_x = draw(span), draw(span)
    flip = draw(2) == 1
    half = cfg.cutout_size // 2
    cutout_y, cutout_x = draw(image_size) - half, draw(image_size) - half
    if not cfg.flip:
        flip = torch.zeros_like(flip)
    jitter = {}
    if cfg.jitter:  # drawn last and only when on, so the other draws (and every recipe without jitter) are unchanged
        jitter = {name: torch.rand(batch_size, generator=generator, device=source) for name in ("brightness", "contrast")}
    params = AugmentParams(crop_y, crop_x, flip, cutout_y, cutout_x, **jitter)
    target = torch.device(device) if device is not None else source
    return params if target == source else _params_to(params, target)


def apply_augment(images: Tensor, params: AugmentParams, cfg: AugmentConfig) -> Tensor:
    """Crop, then flip, then cut out, as ``params`` says; uint8 (B,3,H,W) in, new uint8 tensor out.

    An augmentation switched off in ``cfg`` is skipped whatever ``params`` holds. ``params.flip``
    may be any bool mask (e.g. a recipe's alternating-flip schedule). Crop offsets are clamped
    into ``[0, 2*crop_padding]`` so a bad offset can never index out of bounds on the device.
    """
    _check_batch(images, params)
    _, _, height, width = images.shape
    _check_padding(cfg, height, width)
    erase = None
    if cfg.crop_padding or cfg.flip:
        out, erase = _crop_and_flip(images, params, cfg)
    else:
        out = images.clone()
    if cfg.cutout_size:
        cut = _cutout_mask(params, cfg.cutout_size, height, width)
        erase = cut if erase is None else erase | cut
    if erase is not None:
        out.masked_fill_(erase.unsqueeze(1), 0)
    return out


def augment_batch(images: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Sample parameters for ``images`` and apply them: the one-call path for training."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"augment_batch needs square images, got {tuple(images.shape[-2:])}")
    batch, size = images.shape[0], images.shape[-1]
    params = sample_augment_params(batch, cfg, generator, image_size=size, device=images.device)
    return apply_augment(images, params, cfg)


def jitter_colour(x: Tensor, params: AugmentParams, cfg: AugmentConfig) -> Tensor:
    """Colour jitter on a normalized batch, as the public record does it: each image's pixels
    shifted by its brightness draw, then scaled about the dataset mean (0 here) by its contrast draw.
    Elementwise on the device, so it fuses into the step's graph; ``x`` is returned when jitter is off."""
    if not cfg.jitter:
        return x
    if params.brightness is None or params.contrast is None:
        raise ValueError("colour jitter is on but these AugmentParams hold no brightness/contrast draws")
    # The draws' map to [-1, 1) happens here, in the graph, not as launches of its own.
    shift = ((2 * params.brightness - 1) * cfg.brightness).view(-1, 1, 1, 1).to(x.dtype)
    scale = (1 + (2 * params.contrast - 1) * cfg.contrast).view(-1, 1, 1, 1).to(x.dtype)
    return (x + shift) * scale


def normalize(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> Tensor:
    """uint8 pixels -> ``(x/255 - mean) / std`` per channel, in ``dtype``.

    Computed in float32 and cast once, so low-precision dtypes are rounded only once.
    ``channels_last`` gives the memory format convolutions run fastest in on tensor cores.
    """
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        channels = images.shape[1]
        raise ValueError(f"need one mean and std per channel ({channels}), got {len(mean)} and {len(std)}")
    scale, shift = normalize_constants(tuple(map(float, mean)), tuple(map(float, std)), images.device)
    return normalize_by(images, scale, shift, dtype=dtype, channels_last=channels_last)


def normalize_by(images: Tensor, scale: Tensor, shift: Tensor, *, dtype: torch.dtype = torch.float32,
                 channels_last: bool = True) -> Tensor:
    """:func:`normalize` with its per-channel constants given (:func:`normalize_constants`): the
    form a compiled graph traces, with the constants made once outside it."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    # Change the layout while the pixels are 1-byte uint8, then widen: half the memory traffic.
    out = images.contiguous(memory_format=layout).to(torch.float32).mul_(scale).add_(shift)
    return out.to(dtype)


@functools.lru_cache(maxsize=16)
def normalize_constants(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) with ``(x/255 - m)/s == x * scale + shift``, on ``device``.

    Built and copied once per (mean, std, device), not on every training step.
    """
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32)
    return tuple(_to_device(c, device).view(1, -1, 1, 1) for c in (scale, shift))  # type: ignore[return-value]


def batch_order(n: int, generator: torch.Generator) -> Tensor:
    """A random permutation of ``range(n)`` on the generator's device: one epoch's sample order."""
    return torch.randperm(n, generator=generator, device=generator.device)


def iterate_batches(
    n: int, batch_size: int, generator: torch.Generator, *, drop_last: bool = True
) -> Iterator[Tensor]:
    """Yield one epoch of index batches from a fresh permutation; the batch count is known on host."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    order = batch_order(n, generator)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


# --- internals -------------------------------------------------------------------------------


def _crop_and_flip(images: Tensor, params: AugmentParams, cfg: AugmentConfig) -> tuple[Tensor, Tensor | None]:
    """One gather does crop and flip: each output pixel reads its source pixel's flat index.

    Returns the new images and, for zero padding, the mask of output pixels that fell outside.
    """
    batch, channels, height, width = images.shape
    rows, rows_inside = _source_coords(params.crop_y, height, cfg.crop_padding, cfg.pad_mode)
    cols, cols_inside = _source_coords(params.crop_x, width, cfg.crop_padding, cfg.pad_mode)
    if cfg.flip:  # flipping the output = reading the columns right to left
        mirror = params.flip.unsqueeze(1)
        cols = torch.where(mirror, cols.flip(1), cols)
        if cols_inside is not None:
            cols_inside = torch.where(mirror, cols_inside.flip(1), cols_inside)
    source = (rows.unsqueeze(2) * width + cols.unsqueeze(1)).view(batch, 1, height * width)
    flat = images.reshape(batch, channels, height * width)
    out = flat.gather(2, source.expand(batch, channels, height * width)).view(batch, channels, height, width)
    if rows_inside is None or cols_inside is None:
        return out, None
    outside = ~(rows_inside.unsqueeze(2) & cols_inside.unsqueeze(1))
    return out, outside


def _source_coords(offsets: Tensor, size: int, padding: int, pad_mode: str) -> tuple[Tensor, Tensor | None]:
    """(B, size) source coordinates along one axis for a crop at ``offsets`` in the padded image.

    Reflect padding is pure index arithmetic (mirror about 0 and size-1, edge not repeated);
    zero padding clamps the index and also returns which positions are inside the image.
    """
    positions = torch.arange(size, device=offsets.device)
    if padding == 0:
        return positions.expand(offsets.shape[0], size), None
    coords = offsets.clamp(0, 2 * padding).unsqueeze(1) - padding + positions
    if pad_mode == "reflect":
        last = size - 1
        return last - (last - coords.abs()).abs(), None
    inside = (coords >= 0) & (coords < size)
    return coords.clamp(0, size - 1), inside


def _cutout_mask(params: AugmentParams, size: int, height: int, width: int) -> Tensor:
    """(B, H, W) bool, True inside each image's size x size window (clipped at the border)."""
    rows = torch.arange(height, device=params.cutout_y.device)
    cols = torch.arange(width, device=params.cutout_x.device)
    top, left = params.cutout_y.unsqueeze(1), params.cutout_x.unsqueeze(1)
    in_rows = (rows >= top) & (rows < top + size)
    in_cols = (cols >= left) & (cols < left + size)
    return in_rows.unsqueeze(2) & in_cols.unsqueeze(1)


def _check_batch(images: Tensor, params: AugmentParams) -> None:
    """Shape/dtype checks only: they read tensor metadata, so they never sync with the device."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 (B, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    batch = images.shape[0]
    for name in ("crop_y", "crop_x", "flip", "cutout_y", "cutout_x"):
        draw = getattr(params, name)
        if draw.shape != (batch,):
            raise ValueError(f"AugmentParams.{name} has shape {tuple(draw.shape)}, expected ({batch},)")
    if params.flip.dtype != torch.bool:
        raise ValueError(f"AugmentParams.flip must be a bool tensor, got {params.flip.dtype}")
    for name in ("brightness", "contrast"):
        draw = getattr(params, name)
        if draw is not None and draw.shape != (batch,):
            raise ValueError(f"AugmentParams.{name} has shape {tuple(draw.shape)}, expected ({batch},)")


def _check_padding(cfg: AugmentConfig, height: int, width: int) -> None:
    """Reflection mirrors about the edge pixel, so it cannot reach further than the image is wide."""
    if cfg.pad_mode == "reflect" and cfg.crop_padding >= min(height, width):
        raise ValueError(
            f"AugmentConfig.crop_padding={cfg.crop_padding} must be smaller than the image "
            f"({height}x{width}) for reflect padding"
        )


def _params_to(params: AugmentParams, device: torch.device) -> AugmentParams:
    return dataclasses.replace(params, **{field.name: _to_device(value, device) for field in dataclasses.fields(params)
                                          if (value := getattr(params, field.name)) is not None})


def _to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """Host -> CUDA without a host sync: a pageable copy waits for the stream, a pinned one doesn't."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
