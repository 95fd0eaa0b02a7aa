"""The CUDA-graph step's bookkeeping, on the CPU: after the warm-up steps a capture needs, the
optimizer's reset state must behave exactly like a fresh optimizer's, for every optimizer.

(The capture itself is checked on the simulated H200, ``tests/simcuda/test_trainer.py``; only a
real GPU replays it.)"""
from __future__ import annotations

import pytest
import torch

from speedrun.errors import SettingError
from speedrun.parameters import OPTIMIZER_NAMES, OptimizerConfig, ParamGroup
from speedrun.training.cuda_graph import check_cuda_graph_device, reset_optimizer_state
from speedrun.training.optimizers import build_optimizer

STEPS = 5


def _cases():
    for name in OPTIMIZER_NAMES:
        yield name, False
        if name in ("sgd", "adam", "adamw"):
            yield name, True


def _steps(scheduled, param, grads) -> None:
    for grad in grads:
        param.grad = grad.clone()
        scheduled.step()
        scheduled.zero_grad()


@pytest.mark.parametrize("name,cycled", list(_cases()))
def test_a_reset_optimizer_steps_exactly_like_a_fresh_one(name, cycled):
    torch.manual_seed(0)
    lr = torch.linspace(0.05, 0.01, STEPS)
    momentum = torch.linspace(0.85, 0.95, STEPS) if cycled else None
    config = OptimizerConfig(name=name, weight_decay=5e-4, nesterov=name in ("sgd", "muon"))
    start = torch.randn(8, 4)
    grads = [torch.randn(8, 4) for _ in range(STEPS)]
    orthogonalize = name == "muon"

    fresh_param = torch.nn.Parameter(start.clone())
    fresh = build_optimizer([ParamGroup([fresh_param], orthogonalize=orthogonalize)], config, lr, momentum)
    _steps(fresh, fresh_param, grads)

    param = torch.nn.Parameter(start.clone())
    reused = build_optimizer([ParamGroup([param], orthogonalize=orthogonalize)], config, lr, momentum)
    _steps(reused, param, [torch.randn(8, 4) for _ in range(2)])     # the warm-up a capture needs
    with torch.no_grad():
        param.copy_(start)
    reused.counter.zero_()
    reset_optimizer_state(reused.optimizer)
    _steps(reused, param, grads)

    torch.testing.assert_close(param, fresh_param, rtol=0, atol=0)


def test_the_cuda_graph_setting_is_refused_off_cuda_naming_the_setting():
    with pytest.raises(SettingError, match="cuda_graph needs a CUDA device"):
        check_cuda_graph_device(True, torch.device("cpu"))
    check_cuda_graph_device(False, torch.device("cpu"))
