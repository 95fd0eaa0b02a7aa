"""Triton body of the flat-buffer EMA update; imported only when Triton is.

Same arithmetic as ``torch.lerp`` with a weight of ``1 - decay`` rounded to the buffer's dtype:
float32, the small-weight or large-weight form chosen like torch does, each as one fused
multiply-add (as torch's vectorised CPU kernel and nvcc-compiled CUDA kernel evaluate them),
rounded once on store.
"""
import triton.language as tl


def ema_update_body(ema_ptr, param_ptr, decay_ptr, numel, BLOCK: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * BLOCK
    offsets = start + tl.arange(0, BLOCK)
    inside = offsets < numel
    storage = ema_ptr.dtype.element_ty
    decay = tl.load(decay_ptr).to(tl.float32)
    weight = (1.0 - decay).to(storage).to(tl.float32)
    ema = tl.load(ema_ptr + offsets, mask=inside).to(tl.float32)
    param = tl.load(param_ptr + offsets, mask=inside).to(tl.float32)
    # weight < 1/2: ema + weight*(param-ema); else param - (1-weight)*(param-ema)
    small = tl.abs(weight) < 0.5
    blended = tl.fma(tl.where(small, weight, weight - 1.0), param - ema, tl.where(small, ema, param))
    tl.store(ema_ptr + offsets, blended.to(storage), mask=inside)
