"""Mixed precision: the autocast each setting gives, and fp16's loss scale leaving the step unchanged."""
from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn

from speedrun.data.device_data import DeviceData
from speedrun.recipes.fast94 import fast94_recipe
from speedrun.training.config import TrainConfig
from speedrun.training.precision import autocast_for, scaled_backward, static_loss_scale
from speedrun.training.trainer import Trainer
from tests.support.fast94 import lr_tensor, make_trainer, tiny


@pytest.mark.parametrize("amp, batch, expected", [("fp16", 1000, 1024.0), ("fp16", 1024, 1024.0),
                                                  ("fp16", 2000, 2048.0), ("fp16", 1, 1.0),
                                                  ("bf16", 1000, 1.0), ("fp32", 1000, 1.0)])
def test_fp16_scales_by_the_batch_rounded_up_to_a_power_of_two(amp, batch, expected):
    assert static_loss_scale(amp, batch) == expected


def test_autocast_follows_the_setting_on_cuda_and_is_off_on_the_cpu():
    for amp in ("bf16", "fp16", "fp32"):
        assert not isinstance(autocast_for(torch.device("cpu"), amp), torch.autocast)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # a CPU-only build warns that CUDA autocast is off
        cuda = torch.device("cuda")
        assert autocast_for(cuda, "bf16").fast_dtype == torch.bfloat16
        assert autocast_for(cuda, "fp16").fast_dtype == torch.float16
    assert not isinstance(autocast_for(cuda, "fp32"), torch.autocast)
    with pytest.raises(ValueError, match="amp_dtype"):
        autocast_for(cuda, "fp8")


def test_a_scaled_backward_gives_the_plain_gradients_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 3))
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    nn.functional.cross_entropy(model(x), y).backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    scaled_backward(nn.functional.cross_entropy(model(x), y), 1024.0, [{"params": list(model.parameters())}])
    assert all(torch.equal(a, p.grad) for a, p in zip(plain, model.parameters()))


def test_fp16_trains_the_same_weights_as_bf16_where_autocast_is_off(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=64, test=32)
    weights = {}
    for amp in ("bf16", "fp16"):
        recipe = tiny(fast94_recipe(batch_size=32), epochs=2)
        recipe = recipe.replace(train=dataclasses.replace(recipe.train, amp_dtype=amp))
        trainer = make_trainer(recipe, data)
        assert trainer.loss_scale == (32.0 if amp == "fp16" else 1.0)
        assert trainer.run(0, lr_tensor(trainer, recipe)).status == "ok"
        weights[amp] = [p.detach().clone() for p in trainer.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(weights["bf16"], weights["fp16"])), \
        "scaling by a power of two and back is exact: the loss scale must not change the step"


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="amp_dtype"):
        TrainConfig(amp_dtype="half")


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16", "fp32"])
def test_each_precision_trains_an_epoch_on_the_gpu(amp, make_synthetic_cifar10):
    recipe = tiny(fast94_recipe(batch_size=64), epochs=2, widths=(32, 64, 64))
    recipe = recipe.replace(train=dataclasses.replace(recipe.train, amp_dtype=amp))
    data = DeviceData.from_cifar(make_synthetic_cifar10(train=512, test=128), torch.device("cuda"))
    trainer = Trainer(recipe.model, data, augment=recipe.augment, optimizer=recipe.optimizer, train=recipe.train,
                      compile_model=False, extensions=recipe.extensions)
    seen = []
    trainer.model.fc.register_forward_hook(lambda _m, _inputs, out: seen.append(out.dtype))   # autocast's matmul dtype
    result = trainer.run(0, lr_tensor(trainer, recipe).cuda())
    assert result.status == "ok" and result.final_test_acc is not None
    expected = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[amp]
    assert seen and all(dtype == expected for dtype in seen)
