"""Every recipe's trainer on a simulated H200, in bf16 and fp16: the rehearsal, one full epoch and
the last epoch's end (evaluation, extension hooks, the epoch's one host read).

On fake CUDA tensors a tensor on the wrong device fails at the op that mixes them and any host
read of device data raises, so passing means: everything lives on ``cuda:0`` and the only read
of the device in an epoch is the trainer's ``read_epoch``.
"""
from __future__ import annotations

import pytest

from speedrun.recipes import RECIPES

CONFIGS = [f"{name}/{amp}" for name in sorted(RECIPES) for amp in ("bf16", "fp16")]
ONE_READ_AN_EPOCH = "training/trainer.py:read_epoch"


@pytest.mark.parametrize("config", CONFIGS)
def test_a_recipe_trains_on_simulated_cuda_with_one_host_read_an_epoch(simulate, config):
    result = simulate("trainer")
    assert result["engine_runs_cuda"], "the CUDA shim was not loaded: backward ran through a stand-in"
    outcome = result["configs"][config]
    assert outcome["ok"], f"{outcome['error']} at {outcome['where']} ({outcome['stage']}): {outcome['message']}"
    assert outcome["params"] == outcome["buffers"] == outcome["optimizer_state"] == ["cuda:0"]
    assert outcome["param_dtypes"] == ["torch.float32"]          # autocast computes in bf16/fp16, keeps fp32 weights
    assert outcome["accuracy_device"] == "cuda:0"
    assert outcome["host_reads"] == {ONE_READ_AN_EPOCH: outcome["epochs"]}


EXTENSION_CONFIGS = ["snapshot-ensemble", "plateau", "swa", "lookahead", "optimizer sgd", "optimizer adam",
                     "optimizer adamw", "optimizer rmsprop", "optimizer adagrad", "optimizer adadelta",
                     "optimizer muon (fast94-muon)"]


@pytest.mark.parametrize("config", EXTENSION_CONFIGS)
def test_every_extension_and_optimizer_runs_on_simulated_cuda(simulate, config):
    outcome = simulate("extensions")["configs"][config]
    assert outcome["ok"], f"{outcome['error']} at {outcome['where']} ({outcome['stage']}): {outcome['message']}"
    assert outcome["params"] == outcome["optimizer_state"] == ["cuda:0"]
    assert outcome["host_reads"] == {ONE_READ_AN_EPOCH: 2}


def test_the_extension_list_covers_every_optimizer(simulate):
    from speedrun.parameters import OPTIMIZER_NAMES

    names = {c.removeprefix("optimizer ").split()[0] for c in simulate("extensions")["configs"] if c.startswith("optimizer")}
    assert names == set(OPTIMIZER_NAMES)


@pytest.mark.parametrize("recipe", [*sorted(RECIPES), "classic adam"])
def test_the_cuda_graph_step_is_captured_once_a_run_and_replayed_every_step(simulate, recipe):
    """``--cuda-graph``: one capture for the rehearsal and one for the run, a replay per step,
    and inside the capture no host read, no CPU tensor, no optimizer that refuses capture."""
    outcome = simulate("cuda-graph")["configs"][recipe]
    assert outcome["ok"], f"{outcome['error']} at {outcome['where']} ({outcome['stage']}): {outcome['message']}"
    assert outcome["captures"] == 2
    assert outcome["replays"] == 3 + outcome["steps"]              # the rehearsal's 3 steps, then the epoch's
    assert outcome["params"] == outcome["optimizer_state"] == ["cuda:0"]
    assert outcome["host_reads"] == {ONE_READ_AN_EPOCH: 1}


@pytest.mark.parametrize(("fault", "control", "caught_as", "message"), [
    ("host-read", "none", "DataDependentOutputException", ""),
    ("cpu-tensor", "none", "FakeTensorDeviceMismatchError", ""),
    ("cpu-lr", "none", "RuntimeError", "lr on cpu"),
    ("not-capturable", "graphed-none", "RuntimeError", "capturable is False"),
])
def test_a_planted_gpu_only_bug_is_caught(simulate, fault, control, caught_as, message):
    """A host read in the optimizer step, a CPU tensor in an after-step hook, a learning rate left
    on the host (fused SGD would read it every step), an Adam captured without its capturable
    flag: each costs nothing on a CPU, each must fail here."""
    planted = simulate("planted")["configs"]
    assert planted[control]["ok"], planted[control]        # the control: the same run without the fault
    assert not planted[fault]["ok"]
    assert planted[fault]["error"] == caught_as
    assert planted[fault]["where"].startswith("speedrun/training/")
    assert message in planted[fault]["message"]
