"""No step waits on the host: proven on the CPU with HostSyncCounter, for every recipe, optimizer and extension.

``torch.cuda.set_sync_debug_mode("error")`` catches a sync only on a GPU; the counter catches the
same reads (``.item()``, ``float(t)``, ``if t:``, data-dependent shapes, ``tolist``) on any device,
so a sync added to the loop fails here, in CI, before it ever reaches a GPU.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from speedrun.data.device_data import DeviceData
from speedrun.extensions.plateau import PlateauConfig
from speedrun.extensions.snapshots import SnapshotEnsembleConfig
from speedrun.extensions.swa import SWAConfig
from speedrun.parameters import OPTIMIZER_NAMES, OptimizerConfig, ParamGroup
from speedrun.recipes import RECIPES, get_recipe
from speedrun.schedules import build_schedule, with_warmup
from speedrun.training.optimizers import build_optimizer
from speedrun.training.trainer import Trainer
from tests.support.host_sync import HostSyncCounter

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

CPU = torch.device("cpu")
EPOCHS = 3


# --- the counter itself -------------------------------------------------------------------------

@pytest.mark.parametrize("read", [
    lambda t: t.sum().item(), lambda t: float(t[0]), lambda t: int(t[1]), lambda t: bool(t[0] > 0),
    lambda t: t.tolist(), lambda t: t.numpy(), lambda t: t[t > 1], lambda t: t.nonzero(),
    lambda t: torch.equal(t, t), lambda t: t.unique(), lambda t: t.repeat_interleave(t.long()),
], ids=["item", "float", "int", "bool", "tolist", "numpy", "mask-index", "nonzero", "equal", "unique",
        "repeat_interleave"])
def test_the_counter_sees_every_kind_of_host_read(read):
    t = torch.arange(4.0)
    with HostSyncCounter() as counter:
        read(t)
    assert len(counter.syncs) >= 1
    assert "test_host_sync.py" in counter.syncs[0].where     # it names the line that asked


def test_device_only_work_is_not_a_sync_and_the_methods_are_restored():
    t = torch.arange(4.0)
    with HostSyncCounter() as counter:
        u = (t * 2).cumsum(0).index_select(0, torch.tensor([1, 2])).repeat_interleave(2)
        t[torch.tensor([0, 3])] = u[:2]
        torch._foreach_mul_([t, u], torch.tensor(0.5))
    assert counter.syncs == []
    assert t.tolist() == [1.0, 0.5, 1.0, 1.0]                  # tolist is torch's own again


# --- optimizers ---------------------------------------------------------------------------------

def _optimizer_cases():
    for name in OPTIMIZER_NAMES:
        yield name, False
        if name in ("sgd", "adam", "adamw"):
            yield name, True


@pytest.mark.parametrize("name,cycled", list(_optimizer_cases()))
def test_no_optimizer_step_syncs(name, cycled):
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    lr = torch.linspace(0.1, 0.01, 4)
    momentum = torch.linspace(0.85, 0.95, 4) if cycled else None
    opt = build_optimizer([ParamGroup(params[:1]), ParamGroup(params[1:], lr_scale=4.0)],
                          OptimizerConfig(name=name, nesterov=name == "sgd"), lr, momentum)
    with HostSyncCounter() as counter:
        for _ in range(4):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
            opt.zero_grad()
    assert counter.syncs == [], counter.report()


# --- whole epochs: recipes, optimizers and extensions --------------------------------------------

def _tiny(recipe):
    """The recipe at CPU size: narrow layers, small batches, every epoch evaluated."""
    widths = tuple(max(4, w // 16) for w in recipe.model.widths)
    model = dataclasses.replace(recipe.model, widths=widths)
    if hasattr(model, "whiten_samples"):
        model = dataclasses.replace(model, whiten_samples=64)
    return recipe.replace(model=model, train=dataclasses.replace(recipe.train, epochs=EPOCHS, batch_size=32,
                                                                 eval_every=1, eval_batch_size=48,
                                                                 stop_at_target=False))


def _epochs_syncs(recipe, data, schedule=None) -> tuple[HostSyncCounter, HostSyncCounter]:
    """Counters over (the device part of every epoch, after_log included) and (each epoch's host read)."""
    trainer = Trainer(recipe.model, DeviceData.from_cifar(data, CPU), augment=recipe.augment,
                      optimizer=recipe.optimizer, train=recipe.train, compile_model=False,
                      extensions=recipe.extensions)
    steps = trainer.steps_per_epoch * EPOCHS
    schedule = schedule or recipe.schedule.build(steps, trainer.steps_per_epoch)
    lr = schedule.lr.float()
    momentum = None if schedule.momentum is None else schedule.momentum.float()
    trainer.initialize(0)
    run = trainer.start_run(0, lr, momentum)
    device_part, host_reads = HostSyncCounter(), HostSyncCounter()
    for epoch in range(1, EPOCHS + 1):
        with device_part:
            trainer.train_epoch(run, epoch)
            accuracy = trainer.end_epoch(run, epoch, evaluate=True)
        with host_reads:
            entry = trainer.read_epoch(run, epoch, accuracy, 0.0)
        with device_part:
            for fn in run.hooks.after_log:
                fn(epoch, entry)
    return device_part, host_reads


def _assert_one_read_per_epoch(device_part: HostSyncCounter, host_reads: HostSyncCounter) -> None:
    assert device_part.syncs == [], device_part.report()
    assert len(host_reads.syncs) == EPOCHS, host_reads.report()


@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_every_recipe_syncs_once_per_epoch(recipe_name, make_synthetic_cifar10):
    _assert_one_read_per_epoch(*_epochs_syncs(_tiny(get_recipe(recipe_name)), make_synthetic_cifar10(train=96, test=60)))


@pytest.mark.parametrize("name,cycled", list(_optimizer_cases()))
def test_every_optimizer_in_the_loop_syncs_once_per_epoch(name, cycled, make_synthetic_cifar10):
    recipe = _tiny(get_recipe("classic"))
    recipe = recipe.replace(optimizer=dataclasses.replace(recipe.optimizer, name=name, nesterov=name == "sgd"))
    schedule = None
    if cycled:   # one-cycle with cycled momentum (beta1 for Adam)
        schedule = build_schedule("one_cycle_lr", 3 * EPOCHS, steps_per_epoch=3, max_lr=0.1)
        assert schedule.momentum is not None
    _assert_one_read_per_epoch(*_epochs_syncs(recipe, make_synthetic_cifar10(train=96, test=48), schedule))


EXTENSIONS = {
    "swa": (SWAConfig(epochs=2, swa_lr=0.05, anneal_epochs=1),),
    "snapshots": (SnapshotEnsembleConfig(cycle_end_epochs=(1, 3)),),
    "plateau-train-loss": (PlateauConfig(factor=0.5, patience=0, threshold=1e6, threshold_mode="abs"),),
    "plateau-test-acc": (PlateauConfig(metric="test_acc", factor=0.5, patience=0),),
    "all-together": (SWAConfig(epochs=1, swa_lr=0.05), SnapshotEnsembleConfig(cycle_end_epochs=(2, 3)),
                     PlateauConfig(patience=0)),
}


@pytest.mark.parametrize("key", sorted(EXTENSIONS))
def test_every_extension_syncs_once_per_epoch(key, make_synthetic_cifar10):
    recipe = _tiny(get_recipe("classic"))
    recipe = recipe.replace(extensions=EXTENSIONS[key])
    _assert_one_read_per_epoch(*_epochs_syncs(recipe, make_synthetic_cifar10(train=96, test=48)))


def test_lookahead_and_decoupled_decay_with_warmup_and_cycled_momentum(make_synthetic_cifar10):
    """fast94's own extensions (lookahead, decoupled decay) under a warm-up and a cycled-momentum schedule."""
    recipe = _tiny(get_recipe("fast94"))
    assert recipe.extensions                       # DecoupledWeightDecay and LookaheadConfig
    cycle = build_schedule("cyclic_lr", 3 * EPOCHS - 2, steps_per_epoch=3, base_lr=0.01, max_lr=0.1,
                           step_size_up=2, cycle_momentum=True)
    schedule = with_warmup(cycle, 2)
    assert schedule.momentum is not None and len(schedule) == 3 * EPOCHS
    _assert_one_read_per_epoch(*_epochs_syncs(recipe, make_synthetic_cifar10(train=96, test=48), schedule))


def test_a_whole_run_reads_the_host_once_per_epoch(make_synthetic_cifar10):
    """Trainer.run end to end (initialization, optimizer set-up, every epoch) on fast94: one read an epoch."""
    recipe = _tiny(get_recipe("fast94"))
    trainer = Trainer(recipe.model, DeviceData.from_cifar(make_synthetic_cifar10(train=96, test=48), CPU),
                      augment=recipe.augment, optimizer=recipe.optimizer, train=recipe.train, compile_model=False,
                      extensions=recipe.extensions)
    lr = recipe.schedule.build(trainer.steps_per_epoch * EPOCHS, trainer.steps_per_epoch).lr.float()
    with HostSyncCounter() as counter:
        result = trainer.run(0, lr)
    assert len(result.epochs) == EPOCHS
    assert len(counter.syncs) == EPOCHS, counter.report()
    assert all("read_epoch" in s.where for s in counter.syncs), counter.report()
