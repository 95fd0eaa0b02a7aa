"""Triton body of the fused gather/crop/flip/cutout/normalize pass; imported only when Triton is.

One program writes one output image. Each output pixel works out which source pixel it shows
(crop offset, reflection or zero padding, mirror) by index arithmetic, so no padded copy of the
batch is ever made; its uint8 value (0 where zero padding or cutout applies) then indexes a
per-channel lookup table holding ``normalize`` of every uint8 value, so the result matches the
reference bit for bit whatever arithmetic ``normalize`` uses.
"""
import triton.language as tl


def augment_normalize_body(
    dataset_ptr, indices_ptr, crop_y_ptr, crop_x_ptr, flip_ptr, cutout_y_ptr, cutout_x_ptr,
    lut_ptr, out_ptr,
    num_images,
    src_stride_n, src_stride_c, src_stride_h, src_stride_w,
    out_stride_n, out_stride_c, out_stride_h, out_stride_w,
    CHANNELS: tl.constexpr, HEIGHT: tl.constexpr, WIDTH: tl.constexpr,
    PADDING: tl.constexpr, REFLECT: tl.constexpr, FLIP: tl.constexpr, CUTOUT: tl.constexpr,
    PIXEL_BLOCK: tl.constexpr, CHANNEL_BLOCK: tl.constexpr,
):
    slot = tl.program_id(0).to(tl.int64)
    image = tl.load(indices_ptr + slot).to(tl.int64)
    image = tl.where(image < 0, image + num_images, image)  # torch indexing wraps negatives

    pixel = tl.arange(0, PIXEL_BLOCK)
    channel = tl.arange(0, CHANNEL_BLOCK)
    row = pixel // WIDTH
    col = pixel % WIDTH
    written = (pixel < HEIGHT * WIDTH)[:, None] & (channel < CHANNELS)[None, :]

    src_row = row
    src_col = col
    if FLIP:  # the mirror acts on the cropped image: read its columns right to left
        mirrored = tl.load(flip_ptr + slot) != 0
        src_col = tl.where(mirrored, WIDTH - 1 - col, col)
    shows_pixel = pixel < HEIGHT * WIDTH
    if PADDING > 0:
        top = tl.minimum(tl.maximum(tl.load(crop_y_ptr + slot), 0), 2 * PADDING)
        left = tl.minimum(tl.maximum(tl.load(crop_x_ptr + slot), 0), 2 * PADDING)
        src_row = src_row + top - PADDING
        src_col = src_col + left - PADDING
        if REFLECT:  # mirror about the first and last pixel, edge not repeated
            src_row = (HEIGHT - 1) - tl.abs((HEIGHT - 1) - tl.abs(src_row))
            src_col = (WIDTH - 1) - tl.abs((WIDTH - 1) - tl.abs(src_col))
        else:
            shows_pixel = shows_pixel & (src_row >= 0) & (src_row < HEIGHT)
            shows_pixel = shows_pixel & (src_col >= 0) & (src_col < WIDTH)
    if CUTOUT > 0:  # the window is in output coordinates and clips itself at the border
        cut_top = tl.load(cutout_y_ptr + slot)
        cut_left = tl.load(cutout_x_ptr + slot)
        in_rows = (row >= cut_top) & (row < cut_top + CUTOUT)
        in_cols = (col >= cut_left) & (col < cut_left + CUTOUT)
        shows_pixel = shows_pixel & ~(in_rows & in_cols)

    source = (
        image * src_stride_n
        + channel[None, :] * src_stride_c
        + (src_row * src_stride_h + src_col * src_stride_w)[:, None]
    )
    value = tl.load(dataset_ptr + source, mask=written & shows_pixel[:, None], other=0)
    normalized = tl.load(lut_ptr + channel[None, :] * 256 + value.to(tl.int32), mask=written)

    target = (
        slot * out_stride_n
        + channel[None, :] * out_stride_c
        + (row * out_stride_h + col * out_stride_w)[:, None]
    )
    tl.store(out_ptr + target, normalized, mask=written)
