"""Speed of each Triton kernel against its reference, eager and ``torch.compile``d.

The GPU benchmarks (``-m gpu``) decide whether a kernel is kept (kernels/README.md: it must beat
the compiled reference): a full training batch (1024 of a 50000-image dataset) and the EMA over
airbench94-sized parameters. Each timed call ends with ``torch.cuda.synchronize()`` so the time
is the device's, not the launch's; warm-up rounds absorb Triton and ``torch.compile`` compilation.
The small CPU benchmarks of the references only keep this file exercised on CI.
"""
import pytest
import torch

from speedrun.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    AugmentConfig,
    sample_augment_params,
)
from speedrun.data.cifar10 import CIFAR10_TRAIN_IMAGES
from speedrun.data.fused_input import (
    augment_normalize_fused,
    augment_normalize_reference,
)
from speedrun.kernels import (
    FlatParams,
    ema_update,
    ema_update_reference,
    ema_update_triton,
    triton_is_available,
)

DATASET_SIZE = CIFAR10_TRAIN_IMAGES
BATCH_SIZE = 1024
GPU_ROUNDS, GPU_WARMUP = 200, 5
CPU_ROUNDS, CPU_WARMUP = 10, 1
# Parameter shapes close to airbench94's net (about 2M weights): whitening conv, three
# conv/conv blocks with batch-norm affine parameters, linear head.
AIRBENCH_LIKE_SHAPES = [
    (24, 3, 2, 2), (24,),
    (64, 24, 3, 3), (64,), (64,), (64, 64, 3, 3), (64,), (64,),
    (256, 64, 3, 3), (256,), (256,), (256, 256, 3, 3), (256,), (256,),
    (256, 256, 3, 3), (256,), (256,), (256, 256, 3, 3), (256,), (256,),
    (10, 256),
]


def on_gpu(test):
    """Mark a benchmark ``gpu`` and skip it without CUDA or without Triton."""
    test = pytest.mark.skipif(not triton_is_available(), reason="needs Triton (pip install triton)")(test)
    return pytest.mark.gpu(test)


def timed_on_gpu(fn):
    """``fn`` followed by a device sync, so a benchmark round measures the GPU's work."""

    def run():
        fn()
        torch.cuda.synchronize()

    return run


def augment_inputs(device: str, dataset_size: int, batch_size: int):
    cfg = AugmentConfig()
    g = torch.Generator(device=device).manual_seed(0)
    dataset = torch.randint(0, 256, (dataset_size, 3, 32, 32), generator=g, dtype=torch.uint8, device=device)
    indices = torch.randperm(dataset_size, generator=g, device=device)[:batch_size]
    params = sample_augment_params(batch_size, cfg, g)
    return dataset, indices, params, cfg, CIFAR10_MEAN, CIFAR10_STD, torch.bfloat16


def ema_inputs(device: str, dtype: torch.dtype = torch.float32):
    g = torch.Generator(device=device).manual_seed(0)
    ema = [torch.randn(s, generator=g, device=device).to(dtype) for s in AIRBENCH_LIKE_SHAPES]
    params = [torch.randn(s, generator=g, device=device).to(dtype) for s in AIRBENCH_LIKE_SHAPES]
    return ema, params, torch.tensor(0.99, device=device)


# --- GPU: the keep-or-drop evidence ----------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_augment_inputs():
    return augment_inputs("cuda", DATASET_SIZE, BATCH_SIZE)


AUGMENT_IMPLEMENTATIONS = {
    "triton": lambda: augment_normalize_fused,
    "reference": lambda: augment_normalize_reference,
    "reference-compiled": lambda: torch.compile(augment_normalize_reference),
}


@pytest.mark.benchmark(group="augment_normalize-gpu-B1024-N50000")
@pytest.mark.parametrize("implementation", list(AUGMENT_IMPLEMENTATIONS))
@on_gpu
def test_gpu_augment_normalize(benchmark, gpu_augment_inputs, implementation):
    fn = AUGMENT_IMPLEMENTATIONS[implementation]()
    benchmark.pedantic(timed_on_gpu(lambda: fn(*gpu_augment_inputs)),
                       rounds=GPU_ROUNDS, warmup_rounds=GPU_WARMUP, iterations=1)


def ema_runner(implementation: str, dtype: torch.dtype):
    """A no-argument callable doing one EMA step the way ``implementation`` would in training."""
    ema, params, decay = ema_inputs("cuda", dtype)
    if implementation == "reference-lists":
        return lambda: ema_update_reference(ema, params, decay)
    if implementation == "reference-lists-compiled":
        compiled = torch.compile(ema_update_reference)
        return lambda: compiled(ema, params, decay)
    flat_ema, flat_params = FlatParams.pack(ema), FlatParams.pack(params)
    if implementation == "reference-flat":
        return lambda: ema_update_reference([flat_ema.buffer], [flat_params.buffer], decay)
    return lambda: ema_update_triton(flat_ema, flat_params, decay)


@pytest.mark.benchmark(group="ema_update-gpu-airbench94-shapes")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("implementation", ["triton-flat", "reference-flat", "reference-lists",
                                            "reference-lists-compiled"])
@on_gpu
def test_gpu_ema_update(benchmark, implementation, dtype):
    step = ema_runner(implementation, dtype)
    benchmark.pedantic(timed_on_gpu(step), rounds=GPU_ROUNDS, warmup_rounds=GPU_WARMUP, iterations=1)


# --- CPU: the references, small, so CI runs this file ------------------------------------------


@pytest.mark.benchmark(group="augment_normalize-cpu-B256-N2000")
def test_cpu_augment_normalize_reference(benchmark):
    inputs = augment_inputs("cpu", 2000, 256)
    out = benchmark.pedantic(augment_normalize_reference, args=inputs,
                             rounds=CPU_ROUNDS, warmup_rounds=CPU_WARMUP, iterations=1)
    assert out.shape == (256, 3, 32, 32)


@pytest.mark.benchmark(group="ema_update-cpu-airbench94-shapes")
@pytest.mark.parametrize("layout", ["lists", "flat"])
def test_cpu_ema_update_reference(benchmark, layout):
    ema, params, decay = ema_inputs("cpu")
    if layout == "flat":
        ema, params = FlatParams.pack(ema), FlatParams.pack(params)
    benchmark.pedantic(ema_update, args=(ema, params, decay), rounds=CPU_ROUNDS, warmup_rounds=CPU_WARMUP,
                       iterations=1)
