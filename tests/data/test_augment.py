"""Behaviour of the batched augmentation, checked against a plain per-image reference."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from speedrun.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    AugmentConfig,
    AugmentParams,
    apply_augment,
    augment_batch,
    batch_order,
    iterate_batches,
    jitter_colour,
    normalize,
    sample_augment_params,
)


def images_without_zeros(batch: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Pixels in 1..255, so any zero in an output was put there by cutout or zero padding."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (batch, 3, size, size), generator=g, dtype=torch.uint8)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_params(batch: int, *, crop_y=0, crop_x=0, flip=False, cutout_y=0, cutout_x=0) -> AugmentParams:
    def column(value, dtype):
        return torch.as_tensor(value, dtype=dtype).expand(batch).clone()

    return AugmentParams(
        crop_y=column(crop_y, torch.int64),
        crop_x=column(crop_x, torch.int64),
        flip=column(flip, torch.bool),
        cutout_y=column(cutout_y, torch.int64),
        cutout_x=column(cutout_x, torch.int64),
    )


def reference_augment(images: torch.Tensor, params: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """Obviously-correct per-image version: F.pad + slice, torch.flip, then zero a clipped slice."""
    out = []
    _, _, height, width = images.shape
    p, size = cfg.crop_padding, cfg.cutout_size
    for i, image in enumerate(images):
        image = image.float()
        if p:
            mode = "reflect" if cfg.pad_mode == "reflect" else "constant"
            padded = F.pad(image[None], (p, p, p, p), mode=mode)[0]
            y, x = int(params.crop_y[i]), int(params.crop_x[i])
            image = padded[:, y : y + height, x : x + width]
        if cfg.flip and params.flip[i]:
            image = torch.flip(image, dims=[-1])
        image = image.clone()
        if size:
            top, left = int(params.cutout_y[i]), int(params.cutout_x[i])
            rows = slice(max(top, 0), max(min(top + size, height), 0))
            cols = slice(max(left, 0), max(min(left + size, width), 0))
            image[:, rows, cols] = 0
        out.append(image.to(torch.uint8))
    return torch.stack(out)


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("crop_padding", -1),
        ("crop_padding", 2.0),
        ("crop_padding", True),
        ("pad_mode", "wrap"),
        ("pad_mode", "Reflect"),
        ("flip", 1),
        ("flip", "yes"),
        ("cutout_size", -8),
        ("cutout_size", 8.5),
    ],
)
def test_invalid_config_raises_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})


def test_config_is_immutable_data_with_the_documented_defaults():
    cfg = AugmentConfig()
    assert (cfg.crop_padding, cfg.pad_mode, cfg.flip, cfg.cutout_size) == (4, "reflect", True, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.flip = False  # type: ignore[misc]


def test_reflect_padding_wider_than_the_image_is_rejected():
    cfg = AugmentConfig(crop_padding=8, cutout_size=0)
    with pytest.raises(ValueError, match="crop_padding"):
        sample_augment_params(4, cfg, seeded(0), image_size=8)
    with pytest.raises(ValueError, match="crop_padding"):
        apply_augment(images_without_zeros(4, size=8), make_params(4), cfg)


# --- sampling -------------------------------------------------------------------------------


@pytest.mark.parametrize("padding, cutout", [(4, 8), (2, 5), (0, 0), (1, 1)])
def test_sampled_params_have_right_dtypes_shapes_and_ranges(padding, cutout):
    batch = 4096
    params = sample_augment_params(batch, AugmentConfig(crop_padding=padding, cutout_size=cutout), seeded(1))
    for name in ("crop_y", "crop_x", "cutout_y", "cutout_x"):
        draw = getattr(params, name)
        assert draw.dtype == torch.int64 and draw.shape == (batch,), name
    assert params.flip.dtype == torch.bool and params.flip.shape == (batch,)
    for offsets in (params.crop_y, params.crop_x):  # every offset in [0, 2p] occurs, none outside
        assert set(offsets.tolist()) == set(range(2 * padding + 1))
    for corner in (params.cutout_y, params.cutout_x):  # centre uniform over the image
        assert set((corner + cutout // 2).tolist()) == set(range(32))


def test_flip_is_drawn_about_half_the_time():
    params = sample_augment_params(8192, AugmentConfig(), seeded(2))
    assert 0.46 < params.flip.float().mean().item() < 0.54


def test_flip_off_samples_no_flips_and_padding_zero_samples_zero_offsets():
    params = sample_augment_params(512, AugmentConfig(crop_padding=0, flip=False), seeded(3))
    assert not params.flip.any()
    assert (params.crop_y == 0).all() and (params.crop_x == 0).all()


def test_switching_cutout_off_does_not_reshuffle_crop_and_flip_draws():
    with_cutout = sample_augment_params(256, AugmentConfig(cutout_size=8), seeded(4))
    without = sample_augment_params(256, AugmentConfig(cutout_size=0), seeded(4))
    for name in ("crop_y", "crop_x", "flip"):
        assert torch.equal(getattr(with_cutout, name), getattr(without, name)), name


def test_same_seed_same_batch_and_different_seed_different_batch():
    images = images_without_zeros(64)
    cfg = AugmentConfig()
    first = augment_batch(images, cfg, seeded(7))
    again = augment_batch(images, cfg, seeded(7))
    other = augment_batch(images, cfg, seeded(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_consecutive_batches_from_one_generator_differ():
    g = seeded(9)
    a = sample_augment_params(128, AugmentConfig(), g)
    b = sample_augment_params(128, AugmentConfig(), g)
    assert not torch.equal(a.crop_y, b.crop_y)


# --- crop -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
@pytest.mark.parametrize("padding", [1, 2, 4])
def test_crop_equals_padded_and_shifted_input_exactly(pad_mode, padding):
    cfg = AugmentConfig(crop_padding=padding, pad_mode=pad_mode, flip=False, cutout_size=0)
    images = images_without_zeros(96, seed=padding)
    params = sample_augment_params(96, cfg, seeded(padding))
    assert torch.equal(apply_augment(images, params, cfg), reference_augment(images, params, cfg))


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(2, 12),
    data=st.data(),
    pad_mode=st.sampled_from(["reflect", "zeros"]),
    flip=st.booleans(),
)
def test_crop_and_flip_match_reference_for_any_size_and_offset(size, data, pad_mode, flip):
    padding = data.draw(st.integers(1, size - 1 if pad_mode == "reflect" else size + 3))
    offsets = st.lists(st.integers(0, 2 * padding), min_size=3, max_size=3)
    cfg = AugmentConfig(crop_padding=padding, pad_mode=pad_mode, flip=True, cutout_size=0)
    params = make_params(3, crop_y=data.draw(offsets), crop_x=data.draw(offsets), flip=[flip, not flip, flip])
    images = images_without_zeros(3, size=size, seed=size)
    assert torch.equal(apply_augment(images, params, cfg), reference_augment(images, params, cfg))


def test_zero_padding_brings_in_zeros_only_from_beyond_the_border():
    cfg = AugmentConfig(crop_padding=4, pad_mode="zeros", flip=False, cutout_size=0)
    out = apply_augment(images_without_zeros(1), make_params(1, crop_y=0, crop_x=8), cfg)[0]
    assert (out[:, :4, :] == 0).all() and (out[:, :, 28:] == 0).all()
    assert (out[:, 4:, :28] != 0).all()


def test_padding_zero_is_the_identity_whatever_the_offsets():
    cfg = AugmentConfig(crop_padding=0, flip=False, cutout_size=0)
    images = images_without_zeros(16)
    out = apply_augment(images, make_params(16, crop_y=3, crop_x=5), cfg)
    assert torch.equal(out, images)


def test_out_of_range_offsets_are_clamped_not_read_out_of_bounds():
    cfg = AugmentConfig(crop_padding=2, flip=False, cutout_size=0)
    images = images_without_zeros(4)
    wild = apply_augment(images, make_params(4, crop_y=100, crop_x=-100), cfg)
    edge = apply_augment(images, make_params(4, crop_y=4, crop_x=0), cfg)
    assert torch.equal(wild, edge)


# --- flip -----------------------------------------------------------------------------------


def test_flip_mirrors_the_width_axis_exactly_where_the_mask_is_set():
    cfg = AugmentConfig(crop_padding=0, flip=True, cutout_size=0)
    images = images_without_zeros(32)
    mask = torch.arange(32) % 3 == 0  # any bool mask, e.g. a recipe's own flip schedule
    params = dataclasses.replace(make_params(32), flip=mask)
    out = apply_augment(images, params, cfg)
    assert torch.equal(out[mask], torch.flip(images[mask], dims=[3]))
    assert torch.equal(out[~mask], images[~mask])


def test_flip_off_ignores_the_mask():
    cfg = AugmentConfig(crop_padding=0, flip=False, cutout_size=0)
    images = images_without_zeros(8)
    assert torch.equal(apply_augment(images, make_params(8, flip=True), cfg), images)


# --- cutout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 5, 1])
@pytest.mark.parametrize(
    "top, left",
    [(10, 12), (0, 0), (-4, -4), (-4, 13), (28, 28), (29, -2), (31, 31), (-7, 0), (3, 27)],
)
def test_cutout_zeroes_exactly_the_clipped_window_in_every_channel(size, top, left):
    # includes windows hanging off every edge and corner, and (small sizes) ones fully outside
    cfg = AugmentConfig(crop_padding=0, flip=False, cutout_size=size)
    images = images_without_zeros(2)
    out = apply_augment(images, make_params(2, cutout_y=top, cutout_x=left), cfg)
    rows = torch.arange(32)
    inside_rows = (rows >= top) & (rows < top + size)
    inside_cols = (rows >= left) & (rows < left + size)
    window = inside_rows[:, None] & inside_cols[None, :]
    assert (out[:, :, window] == 0).all()
    assert torch.equal(out[:, :, ~window], images[:, :, ~window])


def test_cutout_windows_from_sampling_are_clipped_squares_of_the_right_area():
    cfg = AugmentConfig(crop_padding=0, flip=False, cutout_size=8)
    images = images_without_zeros(512)
    params = sample_augment_params(512, cfg, seeded(11))
    zeros = (apply_augment(images, params, cfg) == 0).all(dim=1)  # (B, H, W), same in all channels
    rows_hit = zeros.any(dim=2).sum(dim=1)
    cols_hit = zeros.any(dim=1).sum(dim=1)
    assert torch.equal(zeros.sum(dim=(1, 2)), rows_hit * cols_hit)  # a rectangle...
    assert (rows_hit >= 4).all() and (rows_hit <= 8).all()  # ...clipped at most to half a side
    assert (rows_hit < 8).any() and (rows_hit == 8).any()


def test_cutout_off_zeroes_nothing():
    cfg = AugmentConfig(crop_padding=0, flip=False, cutout_size=0)
    images = images_without_zeros(8)
    assert torch.equal(apply_augment(images, make_params(8, cutout_y=4, cutout_x=4), cfg), images)


# --- the whole pipeline -----------------------------------------------------------------------


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_full_pipeline_is_crop_then_flip_then_cutout(pad_mode):
    cfg = AugmentConfig(crop_padding=4, pad_mode=pad_mode, flip=True, cutout_size=8)
    images = images_without_zeros(128, seed=5)
    params = sample_augment_params(128, cfg, seeded(5))
    assert torch.equal(apply_augment(images, params, cfg), reference_augment(images, params, cfg))


def test_everything_off_is_the_identity_and_never_aliases_the_input():
    cfg = AugmentConfig(crop_padding=0, flip=False, cutout_size=0)
    images = images_without_zeros(4)
    out = augment_batch(images, cfg, seeded(0))
    assert torch.equal(out, images)
    out[0, 0, 0, 0] = 0
    assert images[0, 0, 0, 0] != 0


def test_input_batch_is_never_modified():
    images = images_without_zeros(64)
    before = images.clone()
    for cfg in (AugmentConfig(), AugmentConfig(crop_padding=0), AugmentConfig(pad_mode="zeros", flip=False)):
        out = augment_batch(images, cfg, seeded(1))
        assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(images, before)


def test_params_of_the_wrong_shape_or_dtype_are_rejected():
    images = images_without_zeros(4)
    too_long = dataclasses.replace(make_params(4), crop_x=torch.zeros(5, dtype=torch.int64))
    not_bool = dataclasses.replace(make_params(4), flip=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="crop_x"):
        apply_augment(images, too_long, AugmentConfig())
    with pytest.raises(ValueError, match="flip"):
        apply_augment(images, not_bool, AugmentConfig())
    with pytest.raises(ValueError, match="uint8"):
        apply_augment(images.float(), make_params(4), AugmentConfig())


# --- normalize ------------------------------------------------------------------------------


def test_cifar10_statistics_are_immutable_per_channel_tuples():
    for stats in (CIFAR10_MEAN, CIFAR10_STD):
        assert isinstance(stats, tuple) and len(stats) == 3
        assert all(0.1 < value < 0.6 for value in stats)


@pytest.mark.parametrize("channels_last", [True, False])
def test_normalize_matches_the_formula_in_the_requested_layout(channels_last):
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out = normalize(images, CIFAR10_MEAN, CIFAR10_STD, channels_last=channels_last)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    expected = (images.float() / 255 - mean) / std
    assert out.dtype == torch.float32 and out.shape == images.shape
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-5)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_normalize_returns_the_requested_dtype(dtype):
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    exact = normalize(images, CIFAR10_MEAN, CIFAR10_STD)
    out = normalize(images, CIFAR10_MEAN, CIFAR10_STD, dtype=dtype)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), exact, rtol=1e-2, atol=1e-2)


def test_normalize_with_trivial_statistics_is_plain_rescaling():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize(images, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), channels_last=False)
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.2, 1.0]))


def test_normalize_needs_one_statistic_per_channel():
    with pytest.raises(ValueError):
        normalize(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), (0.5, 0.5), (0.2, 0.2, 0.2))


# --- batch order ----------------------------------------------------------------------------


def test_batch_order_is_a_seed_reproducible_permutation():
    order = batch_order(1000, seeded(3))
    assert order.dtype == torch.int64
    assert torch.equal(order.sort().values, torch.arange(1000))
    assert torch.equal(order, batch_order(1000, seeded(3)))
    assert not torch.equal(order, batch_order(1000, seeded(4)))


def test_iterate_batches_drops_the_ragged_tail_by_default():
    batches = list(iterate_batches(103, 10, seeded(5)))
    assert [len(b) for b in batches] == [10] * 10
    seen = torch.cat(batches)
    assert len(set(seen.tolist())) == 100 and all(0 <= i < 103 for i in seen.tolist())
    assert torch.equal(seen, batch_order(103, seeded(5))[:100])


def test_iterate_batches_without_drop_last_covers_everything_once():
    batches = list(iterate_batches(103, 10, seeded(5), drop_last=False))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(103))


# --- device ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_matches_cpu_given_the_same_params():
    cfg = AugmentConfig()
    images = images_without_zeros(256)
    params = sample_augment_params(256, cfg, seeded(6), device="cuda")  # CPU draws, moved to the GPU
    assert params.flip.device.type == "cuda"
    on_gpu = apply_augment(images.cuda(), params, cfg).cpu()
    cpu_params = sample_augment_params(256, cfg, seeded(6))
    assert torch.equal(on_gpu, apply_augment(images, cpu_params, cfg))
    norm_gpu = normalize(on_gpu.cuda(), CIFAR10_MEAN, CIFAR10_STD).cpu()
    torch.testing.assert_close(norm_gpu, normalize(on_gpu, CIFAR10_MEAN, CIFAR10_STD))


@pytest.mark.gpu
def test_cuda_step_never_syncs_with_the_host():
    images = images_without_zeros(256).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    for cfg in (AugmentConfig(), AugmentConfig(pad_mode="zeros")):
        augment_batch(images, cfg, g)  # warm up lazy CUDA init outside the check
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for indices in iterate_batches(256, 64, g):
                out = augment_batch(images[indices], cfg, g)
                normalize(out, CIFAR10_MEAN, CIFAR10_STD, dtype=torch.bfloat16)
        finally:
            torch.cuda.set_sync_debug_mode("default")


# --- colour jitter ------------------------------------------------------------------------------

JITTER = AugmentConfig(brightness=0.14, contrast=0.13)


def test_colour_jitter_draws_come_last_and_leave_the_other_draws_alone():
    plain = sample_augment_params(64, AugmentConfig(), torch.Generator().manual_seed(3))
    jittered = sample_augment_params(64, JITTER, torch.Generator().manual_seed(3))
    for name in ("crop_y", "crop_x", "flip", "cutout_y", "cutout_x"):
        assert torch.equal(getattr(plain, name), getattr(jittered, name)), name
    assert plain.brightness is None and plain.contrast is None, "no draws when jitter is off"
    for draw in (jittered.brightness, jittered.contrast):
        assert draw.dtype == torch.float32 and draw.shape == (64,) and bool(((draw >= 0) & (draw < 1)).all())
    again = sample_augment_params(64, JITTER, torch.Generator().manual_seed(3))
    assert torch.equal(again.brightness, jittered.brightness) and torch.equal(again.contrast, jittered.contrast)


def test_colour_jitter_shifts_then_scales_each_image_by_its_own_draws():
    x = torch.randn(4, 3, 8, 8)
    # uniform draws u map to 2u - 1: 1 -> +1, 0 -> -1, 0.5 -> 0, 0.75 -> 0.5
    params = dataclasses.replace(make_params(4), brightness=torch.tensor([1.0, 0.0, 0.5, 0.75]),
                                 contrast=torch.tensor([0.5, 1.0, 0.0, 0.75]))
    out = jitter_colour(x, params, JITTER)
    for i, (b, c) in enumerate([(0.14, 1.0), (-0.14, 1.13), (0.0, 0.87), (0.07, 1.065)]):
        torch.testing.assert_close(out[i], (x[i] + b) * c)
    assert jitter_colour(x, make_params(4), AugmentConfig()) is x, "off: the batch itself"
    with pytest.raises(ValueError, match="no brightness/contrast draws"):
        jitter_colour(x, make_params(4), JITTER)


@pytest.mark.parametrize("changes, flag", [({"brightness": -0.1}, "brightness"), ({"contrast": 1.0}, "contrast")])
def test_colour_jitter_amounts_are_checked(changes, flag):
    with pytest.raises(ValueError, match=flag):
        AugmentConfig(**changes)
