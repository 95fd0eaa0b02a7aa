"""Every hand-written Triton kernel compiles for an H200 (sm_90), with the arguments its own
launch code passes, and none spills registers to local memory.

The launch arguments are captured from the wrappers (``tests.support.sm90``): for each recipe's
augmentation in each dtype the input kernel can produce, and the EMA kernel in every dtype it
takes. A planted kernel that cannot compile proves the check can fail.
"""
from __future__ import annotations

import importlib

import pytest
import torch

from speedrun.data.augment import sample_augment_params
from speedrun.data.fused_input import augment_normalize_fused
from speedrun.kernels.flat_params import FlatParams
from speedrun.recipes import RECIPES
from tests.support.sm90 import KernelReport, captured_launches, compile_launch, compile_sm90

triton = pytest.importorskip("triton")
augment_module = importlib.import_module("speedrun.kernels.augment_normalize")
ema_module = importlib.import_module("speedrun.kernels.ema_update")

AUGMENTS = {name: recipe.augment for name, recipe in sorted(RECIPES.items())}


def assert_compiles_without_spills(report: KernelReport) -> None:
    print(f"{report.name}: {report.ptx_target}, {report.registers} registers, {report.local_bytes} B local")
    assert report.ok, report.error
    assert report.ptx_target == "sm_90a" or report.ptx_target == "sm_90", report.ptx_target
    assert not report.spills, f"{report.name} spills {report.local_bytes} B to local memory"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("recipe", sorted(AUGMENTS))
def test_the_input_kernel_compiles_for_sm90_as_each_recipe_launches_it(recipe, dtype, tmp_path):
    augment = AUGMENTS[recipe]
    dataset = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)      # the real strides; N appears in none
    indices = torch.arange(32)
    draws = sample_augment_params(32, augment, torch.Generator().manual_seed(0), image_size=32)
    with captured_launches(augment_module) as launches:
        augment_normalize_fused(dataset, indices, draws, augment, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), dtype=dtype)
    assert len(launches) == 1
    assert_compiles_without_spills(compile_launch(f"augment_normalize_{recipe}", launches[0], keep=str(tmp_path)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_the_ema_kernel_compiles_for_sm90_in_every_dtype_it_takes(dtype, tmp_path):
    params = [torch.zeros(64, 3, 3, 3, dtype=dtype), torch.zeros(64, dtype=dtype)]
    ema, current = FlatParams.pack(params), FlatParams.pack(params)
    with captured_launches(ema_module) as launches:
        ema_module.ema_update_triton(ema, current, torch.tensor(0.99))
    assert len(launches) == 1
    assert_compiles_without_spills(compile_launch("ema_update", launches[0], keep=str(tmp_path)))


def _cannot_compile_for_sm90(out_ptr, BLOCK: triton.language.constexpr):
    offsets = triton.language.arange(0, BLOCK)          # arange needs a power of two
    triton.language.store(out_ptr + offsets, offsets)


def test_a_kernel_that_cannot_compile_for_sm90_is_reported_not_raised():
    report = compile_sm90("planted", _cannot_compile_for_sm90, {"out_ptr": "*i32", "BLOCK": "constexpr"}, {"BLOCK": 1000})
    assert not report.ok and "power of 2" in report.error
