"""Speed of the training loop's parts, for every recipe: the augmentation pass, one step, one epoch.

GPU (``-m gpu``, skipped without CUDA): full size, as ``speedrun`` trains: the recipe's own
net, batch and augmentation, the model ``torch.compile``d with inductor, bf16 autocast, a
50,000-image dataset on the device. Every timed call ends with ``torch.cuda.synchronize()`` so a
round is the device's time, not the launch's; warm-up rounds absorb compilation. These figures
are saved as baselines under ``results/benchmarks/<device-slug>/`` and compared against them
(tests/benchmarks/README.md).

CPU (what CI runs): tiny widths and small sets, so every benchmark path runs in seconds. Their
absolute times mean nothing across machines, so the CPU *gates* are ratios of two things timed
interleaved in one process: a ``torch.compile``d step against the eager one, and the batched
augmentation against a per-image loop. CPU work runs on one thread (see ``one_cpu_thread``).

Recipes are read from ``RECIPES`` at collection time, so a newly registered recipe joins every
test here without an edit.
"""
from __future__ import annotations

import dataclasses
import functools
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from speedrun.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    AugmentConfig,
    AugmentParams,
    apply_augment,
    normalize,
    sample_augment_params,
)
from speedrun.data.cifar10 import CIFAR10_TRAIN_IMAGES
from speedrun.data.device_data import DeviceData
from speedrun.recipes import RECIPES, Recipe
from speedrun.training.hooks import RunState
from speedrun.training.trainer import Trainer

RECIPE_NAMES = tuple(RECIPES)

GPU_DATASET = CIFAR10_TRAIN_IMAGES
GPU_AUGMENT_ROUNDS, GPU_STEP_ROUNDS, GPU_EPOCH_ROUNDS = 200, 50, 5
GPU_WARMUP = 3                     # the first step compiles (inductor); later rounds are steady

CPU_WIDTH_DIVISOR = 8              # classic: 8/16/32/64 channels; fast94: 8/32/32
CPU_BATCH = 64
CPU_DATASET = 512                  # 8 steps an epoch
CPU_AUGMENT_BATCH, CPU_AUGMENT_DATASET = 256, 2048
CPU_ROUNDS = 10

# --- CPU gates, each a ratio of medians over interleaved rounds in one process -------------------
#
# compiled / eager step time <= COMPILE_RATIO_BOUND. The compiled step uses the aot_eager
# backend: Dynamo capture plus AOTAutograd's joint forward/backward graph, i.e. everything
# inductor is handed, without code generation. Inductor itself takes over a minute to compile
# even the tiny net on 2 CPU cores, and its CPU kernels say nothing about the GPU anyway.
# What this catches: graph breaks, guards re-evaluated expensively, or a recompile every step
# (that one fails outright: timed rounds run under fail_on_recompile). Measured: 0.99-1.21 in 48
# of 49 measurements (three recipes, 15 or 25 rounds, load average 3.3-5.6 on 2 cores), one 1.46
# with 15 rounds, hence 25. 1.5 leaves that room on a shared, noisy CI box.
COMPILE_BACKEND = "aot_eager"
COMPILE_ROUNDS = 25
COMPILE_RATIO_BOUND = 1.5
#
# per-image loop / batched augmentation time >= AUGMENT_SPEEDUP_FLOOR. The loop is numpy, one
# image at a time, as a Dataset's transforms would be; the batched pass is the Trainer's. Measured
# 1.98-3.48x on one core at the recipes' batch sizes (33 measurements) (the batched pass is bound by memory copies, the
# channels_last conversion in normalize most of all). 1.5 still fails if the batched pass loses its
# batching (a Python loop over images in it gives about 1x).
AUGMENT_ROUNDS = 21
AUGMENT_SPEEDUP_FLOOR = 1.5


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """One intra-op thread for the duration of each test, restored afterwards.

    On a busy 2-core box OpenMP's spin-waiting made two threads 3-6x slower than one for these
    small nets, and wildly variable; one thread is steady. (GPU tests only launch from it.)
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model: stored with every benchmark so baselines stay per device."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def requires_cuda(test):
    """Mark a test ``gpu`` and skip it without CUDA."""
    return pytest.mark.gpu(test)


def tiny(recipe: Recipe) -> Recipe:
    """``recipe`` at an eighth of its widths (at least 4 channels) and CPU_BATCH, for CPU runs."""
    model = dataclasses.replace(recipe.model, widths=tuple(max(4, w // CPU_WIDTH_DIVISOR)
                                                           for w in recipe.model.widths))
    return recipe.replace(model=model, train=dataclasses.replace(recipe.train, batch_size=CPU_BATCH))


def random_device_data(n: int, device: torch.device, seed: int = 0) -> DeviceData:
    """Random uint8 pixels and labels: timing does not depend on what the images show."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def images(count: int) -> torch.Tensor:
        return torch.randint(0, 256, (count, 3, 32, 32), generator=gen, device=device, dtype=torch.uint8)

    def labels(count: int) -> torch.Tensor:
        return torch.randint(0, 10, (count,), generator=gen, device=device)

    return DeviceData(images(n), labels(n), images(256), labels(256))


@dataclass
class TrainingBench:
    """A Trainer with its run state (optimizer, schedule, extension hooks), ready to time a step or an epoch."""

    trainer: Trainer
    run: RunState

    def step(self) -> None:
        """One training step, as ``Trainer.train_epoch`` takes it (hooks included)."""
        data, batch = self.trainer.data, self.trainer.config.batch_size
        indices = torch.randint(0, len(data.train_images), (1, batch), generator=self.run.generator,
                                device=self.run.generator.device)
        self.trainer.train_steps(self.run, data.train_images, data.train_labels, indices, epoch=1)

    def epoch(self) -> None:
        self.trainer.train_epoch(self.run, 1)


def training_bench(recipe: Recipe, data: DeviceData, *, compile_model: bool,
                   backend: str = "inductor") -> TrainingBench:
    """What ``Trainer.run`` sets up before its first epoch, for a full-length run of ``recipe``."""
    trainer = Trainer(recipe.model, data, augment=recipe.augment, optimizer=recipe.optimizer, train=recipe.train,
                      compile_model=compile_model, extensions=recipe.extensions, compile_backend=backend)
    trainer.initialize(0)
    schedule = recipe.schedule.build(trainer.total_steps, trainer.steps_per_epoch)
    momentum = None if schedule.momentum is None else schedule.momentum.to(data.device, torch.float32)
    run = trainer.start_run(0, schedule.lr.to(data.device, torch.float32), momentum)
    trainer.model.train()
    return TrainingBench(trainer, run)


def augment_pass(data: DeviceData, cfg: AugmentConfig, batch: int, generator: torch.Generator) -> Callable[[], torch.Tensor]:
    """One batch's input pipeline: pick indices, gather, sample, crop/flip/cutout, normalize."""
    def run() -> torch.Tensor:
        indices = torch.randint(0, len(data.train_images), (batch,), generator=generator, device=generator.device)
        params = sample_augment_params(batch, cfg, generator)
        return normalize(apply_augment(data.train_images[indices], params, cfg), CIFAR10_MEAN, CIFAR10_STD)

    return run


def synchronized(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` followed by a device sync, so a GPU round measures the device's work."""
    def run() -> None:
        fn()
        torch.cuda.synchronize()

    return run


def describe(benchmark, device: torch.device, recipe: Recipe, **sizes) -> None:
    benchmark.extra_info.update({"device": device_name(device), "recipe": recipe.name, "torch": torch.__version__,
                                 "widths": list(recipe.model.widths), **sizes})


# --- GPU: full size, the figures baselines are made of -------------------------------------------


@functools.cache
def gpu_bench(recipe_name: str) -> TrainingBench:
    """One compiled full-size trainer per recipe, shared by the step and epoch benchmarks (one compile)."""
    device = torch.device("cuda")
    return training_bench(RECIPES[recipe_name], random_device_data(GPU_DATASET, device), compile_model=True)


@pytest.mark.benchmark(group="augment-gpu")
@pytest.mark.parametrize("recipe_name", RECIPE_NAMES)
@requires_cuda
def test_gpu_augment_pass(benchmark, recipe_name):
    recipe, device = RECIPES[recipe_name], torch.device("cuda")
    data = gpu_bench(recipe_name).trainer.data
    run = augment_pass(data, recipe.augment, recipe.train.batch_size, torch.Generator(device=device).manual_seed(0))
    describe(benchmark, device, recipe, batch_size=recipe.train.batch_size, dataset_size=GPU_DATASET)
    benchmark.pedantic(synchronized(run), rounds=GPU_AUGMENT_ROUNDS, warmup_rounds=GPU_WARMUP, iterations=1)


@pytest.mark.benchmark(group="train-step-gpu")
@pytest.mark.parametrize("recipe_name", RECIPE_NAMES)
@requires_cuda
def test_gpu_train_step(benchmark, recipe_name):
    recipe, bench = RECIPES[recipe_name], gpu_bench(recipe_name)
    describe(benchmark, torch.device("cuda"), recipe, batch_size=recipe.train.batch_size, dataset_size=GPU_DATASET,
             compile="inductor")
    benchmark.pedantic(synchronized(bench.step), rounds=GPU_STEP_ROUNDS, warmup_rounds=GPU_WARMUP, iterations=1)


@pytest.mark.benchmark(group="train-epoch-gpu")
@pytest.mark.parametrize("recipe_name", RECIPE_NAMES)
@requires_cuda
def test_gpu_train_epoch(benchmark, recipe_name):
    recipe, bench = RECIPES[recipe_name], gpu_bench(recipe_name)
    describe(benchmark, torch.device("cuda"), recipe, batch_size=recipe.train.batch_size, dataset_size=GPU_DATASET,
             steps=bench.trainer.steps_per_epoch, compile="inductor")
    benchmark.pedantic(synchronized(bench.epoch), rounds=GPU_EPOCH_ROUNDS, warmup_rounds=1, iterations=1)


# --- CPU: tiny, so CI runs every path; figures comparable only on one machine ------------------


@pytest.mark.benchmark(group="augment-cpu")
@pytest.mark.parametrize("recipe_name", RECIPE_NAMES)
def test_cpu_augment_pass(benchmark, recipe_name):
    recipe, device = RECIPES[recipe_name], torch.device("cpu")
    run = augment_pass(random_device_data(CPU_AUGMENT_DATASET, device), recipe.augment, CPU_AUGMENT_BATCH,
                       torch.Generator().manual_seed(0))
    describe(benchmark, device, recipe, batch_size=CPU_AUGMENT_BATCH, dataset_size=CPU_AUGMENT_DATASET)
    out = benchmark.pedantic(run, rounds=CPU_ROUNDS, warmup_rounds=1, iterations=1)
    assert out.shape == (CPU_AUGMENT_BATCH, 3, 32, 32) and out.dtype == torch.float32


@pytest.mark.benchmark(group="train-step-cpu")
@pytest.mark.parametrize("recipe_name", RECIPE_NAMES)
def test_cpu_train_step(benchmark, recipe_name):
    recipe, device = tiny(RECIPES[recipe_name]), torch.device("cpu")
    bench = training_bench(recipe, random_device_data(CPU_DATASET, device), compile_model=False)
    describe(benchmark, device, recipe, batch_size=CPU_BATCH, dataset_size=CPU_DATASET, compile=None)
    benchmark.pedantic(bench.step, rounds=CPU_ROUNDS, warmup_rounds=1, iterations=1)
    assert int(bench.run.optimizer.counter) >= 1, "the timed function took no optimizer step"


@pytest.mark.benchmark(group="train-epoch-cpu")
@pytest.mark.parametrize("recipe_name", RECIPE_NAMES)
def test_cpu_train_epoch(benchmark, recipe_name):
    recipe, device = tiny(RECIPES[recipe_name]), torch.device("cpu")
    bench = training_bench(recipe, random_device_data(CPU_DATASET, device), compile_model=False)
    describe(benchmark, device, recipe, batch_size=CPU_BATCH, dataset_size=CPU_DATASET,
             steps=bench.trainer.steps_per_epoch, compile=None)
    benchmark.pedantic(bench.epoch, rounds=3, warmup_rounds=1, iterations=1)
    steps, per_epoch = int(bench.run.optimizer.counter), bench.trainer.steps_per_epoch
    assert steps >= per_epoch and steps % per_epoch == 0, "an epoch did not take all its steps"


# --- CPU gates: ratios measured in one run ------------------------------------------------------


def interleaved_medians(candidates: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each candidate over ``rounds`` rounds that alternate between them.

    Interleaving puts both under the same background load, round by round, so their ratio is
    steady on a machine whose absolute speed is not.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


@pytest.mark.parametrize("recipe_name", RECIPE_NAMES)
def test_cpu_compiled_step_costs_at_most_a_bounded_ratio_of_eager(recipe_name, record_property):
    recipe, device = tiny(RECIPES[recipe_name]), torch.device("cpu")
    data = random_device_data(CPU_DATASET, device)
    eager = training_bench(recipe, data, compile_model=False)
    compiled = training_bench(recipe, data, compile_model=True, backend=COMPILE_BACKEND)
    try:
        compiled.step()          # traces and compiles
        compiled.step()
        eager.step()
        with torch.compiler.set_stance("fail_on_recompile"):
            medians = interleaved_medians({"eager": eager.step, "compiled": compiled.step}, COMPILE_ROUNDS)
    finally:
        torch._dynamo.reset()    # no compiled code or caches left behind for other tests
    ratio = medians["compiled"] / medians["eager"]
    record_property("compiled_over_eager", ratio)
    print(f"{recipe_name}: eager {medians['eager'] * 1e3:.1f} ms, {COMPILE_BACKEND} {medians['compiled'] * 1e3:.1f} ms, "
          f"ratio {ratio:.3f} (bound {COMPILE_RATIO_BOUND})")
    assert ratio <= COMPILE_RATIO_BOUND, (
        f"{recipe_name}: a {COMPILE_BACKEND}-compiled step took {ratio:.2f}x the eager one (bound "
        f"{COMPILE_RATIO_BOUND}): look for graph breaks (TORCH_LOGS=graph_breaks) in the model's forward")


def augment_per_image(images: torch.Tensor, params: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """The reference the batched pass must beat: numpy, one image at a time, same draws, same output.

    Pad (reflect or zeros), crop at the drawn offset, mirror, zero the clipped cutout window,
    normalize with the CIFAR-10 statistics, stack as channels_last float32.
    """
    mean = np.asarray(CIFAR10_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(3, 1, 1)
    crop_y, crop_x, flip, cut_y, cut_x = (getattr(params, n).tolist()
                                          for n in ("crop_y", "crop_x", "flip", "cutout_y", "cutout_x"))
    pad, size, mode = cfg.crop_padding, cfg.cutout_size, ("reflect" if cfg.pad_mode == "reflect" else "constant")
    out = []
    for i, image in enumerate(images.numpy()):
        height, width = image.shape[1:]
        if pad:
            padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode=mode)
            image = padded[:, crop_y[i]:crop_y[i] + height, crop_x[i]:crop_x[i] + width]
        if cfg.flip and flip[i]:
            image = image[:, :, ::-1]
        image = image.copy()
        if size:
            image[:, max(cut_y[i], 0):max(cut_y[i] + size, 0), max(cut_x[i], 0):max(cut_x[i] + size, 0)] = 0
        out.append((image.astype(np.float32) / 255 - mean) / std)
    return torch.from_numpy(np.stack(out)).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("cfg", [
    AugmentConfig(),
    AugmentConfig(crop_padding=2, cutout_size=0),
    AugmentConfig(pad_mode="zeros", cutout_size=12),
    AugmentConfig(crop_padding=0, flip=False, cutout_size=5),
], ids=["classic", "translate2", "zeros-cutout12", "cutout-only"])
def test_the_per_image_reference_does_the_same_work_as_the_batched_pass(cfg):
    gen = torch.Generator().manual_seed(3)
    images = random_device_data(64, torch.device("cpu")).train_images
    params = sample_augment_params(64, cfg, gen)
    batched = normalize(apply_augment(images, params, cfg), CIFAR10_MEAN, CIFAR10_STD)
    torch.testing.assert_close(augment_per_image(images, params, cfg), batched, rtol=0, atol=1e-5)


@pytest.mark.parametrize("recipe_name", RECIPE_NAMES)
def test_cpu_batched_augmentation_beats_a_per_image_loop(recipe_name, record_property):
    recipe = RECIPES[recipe_name]
    batch, cfg = recipe.train.batch_size, recipe.augment
    data = random_device_data(CPU_AUGMENT_DATASET, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    indices = torch.randint(0, CPU_AUGMENT_DATASET, (batch,), generator=gen)

    def batched():
        params = sample_augment_params(batch, cfg, gen)
        return normalize(apply_augment(data.train_images[indices], params, cfg), CIFAR10_MEAN, CIFAR10_STD)

    def per_image():
        params = sample_augment_params(batch, cfg, gen)
        return augment_per_image(data.train_images[indices], params, cfg)

    medians = interleaved_medians({"batched": batched, "per_image": per_image}, AUGMENT_ROUNDS)
    speedup = medians["per_image"] / medians["batched"]
    record_property("batched_speedup", speedup)
    print(f"{recipe_name}: batch {batch}: batched {medians['batched'] * 1e3:.2f} ms, per-image loop "
          f"{medians['per_image'] * 1e3:.2f} ms, speedup {speedup:.2f}x (floor {AUGMENT_SPEEDUP_FLOOR}x)")
    assert speedup >= AUGMENT_SPEEDUP_FLOOR, (
        f"{recipe_name}: the batched augmentation is only {speedup:.2f}x faster than a per-image numpy loop "
        f"(floor {AUGMENT_SPEEDUP_FLOOR}x)")
