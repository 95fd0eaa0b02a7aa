"""Compiled as it will run on a GPU: all graphs are built in the warm-up, shapes are static, no graph breaks.

A measured run that compiles (a dynamic batch dimension, a strided test-time view, an eval batch
of a new size) charges seconds of compilation to the timed part, so these tests turn any
recompile into an error (``error_on_recompile``) and count every graph the backend is handed.
The aot_eager backend runs every recipe quickly; the real inductor backend runs fast94, the
recipe the speed claims are about.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from speedrun.data.device_data import DeviceData
from speedrun.models.protocol import one_group, reinitialize
from speedrun.recipes import RECIPES, get_recipe
from speedrun.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

CPU = torch.device("cpu")


class CountingBackend:
    """A torch.compile backend that hands each graph to a real backend, keeping count of the
    graphs and of those with a symbolic (dynamic) size among their inputs."""

    def __init__(self, name: str) -> None:
        self.backend = torch._dynamo.lookup_backend(name)
        self.graphs = 0
        self.dynamic_graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        self.dynamic_graphs += any(_is_symbolic(x) for x in example_inputs)
        return self.backend(gm, example_inputs)


def _is_symbolic(x) -> bool:
    if isinstance(x, torch.SymInt):
        return True
    return isinstance(x, torch.Tensor) and any(isinstance(d, torch.SymInt) for d in (*x.shape, *x.stride()))


def compiled_trainer(recipe_name: str, data, backend, *, epochs: int = 2) -> tuple[Trainer, torch.Tensor, torch.Tensor | None]:
    """A tiny compiled trainer of the recipe; the test set (60) is not a multiple of the eval batch (48)."""
    recipe = get_recipe(recipe_name)
    model = dataclasses.replace(recipe.model, widths=tuple(max(4, w // 16) for w in recipe.model.widths))
    train = dataclasses.replace(recipe.train, epochs=epochs, batch_size=32, eval_every=1, eval_batch_size=48,
                                stop_at_target=False)
    trainer = Trainer(model, DeviceData.from_cifar(data, CPU), augment=recipe.augment, optimizer=recipe.optimizer,
                      train=train, compile_model=True, compile_backend=backend, extensions=recipe.extensions)
    schedule = recipe.schedule.build(trainer.steps_per_epoch * epochs, trainer.steps_per_epoch)
    momentum = None if schedule.momentum is None else schedule.momentum.float()
    return trainer, schedule.lr.float(), momentum


def assert_measured_runs_compile_nothing(trainer: Trainer, backend: CountingBackend, lr, momentum) -> None:
    torch._dynamo.reset()
    trainer.rehearse(lr, momentum)
    built = backend.graphs
    assert built >= 2                               # the training graph and the evaluation graph at least
    assert backend.dynamic_graphs == 0, "a graph was compiled with a dynamic size: batch shapes must be static"
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in (0, 1):
            result = trainer.run(seed, lr, momentum)
            assert result.status == "ok" and result.final_test_acc is not None
    assert backend.graphs == built, f"{backend.graphs - built} graph(s) compiled during the measured runs"


@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_after_the_warmup_no_recipe_compiles_again(recipe_name, make_synthetic_cifar10):
    backend = CountingBackend("aot_eager")
    trainer, lr, momentum = compiled_trainer(recipe_name, make_synthetic_cifar10(train=96, test=60), backend)
    assert_measured_runs_compile_nothing(trainer, backend, lr, momentum)


def test_fast94_under_inductor_compiles_only_in_the_warmup(make_synthetic_cifar10):
    """The real backend: C++ kernels generated and built on the CPU, as Triton ones would be on a GPU."""
    backend = CountingBackend("inductor")
    trainer, lr, momentum = compiled_trainer("fast94", make_synthetic_cifar10(train=64, test=60), backend, epochs=1)
    assert_measured_runs_compile_nothing(trainer, backend, lr, momentum)


def test_a_graph_break_is_an_error_not_a_silent_slowdown(make_synthetic_cifar10):
    class Breaks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 10, 3)

        def forward(self, x):
            x = self.conv(x).mean((2, 3))
            if x.sum() > 0:                        # data-dependent control flow: a graph break
                return x
            return -x

    @dataclasses.dataclass(frozen=True)
    class BreakingConfig:
        def build(self) -> nn.Module:
            return Breaks()

        def initialize(self, model, seed, train_images) -> None:
            reinitialize(model, seed)

        def param_groups(self, model, optimizer):
            return one_group(model)

    recipe = get_recipe("classic")
    trainer = Trainer(BreakingConfig(), DeviceData.from_cifar(make_synthetic_cifar10(train=64, test=32), CPU),
                      augment=recipe.augment, optimizer=recipe.optimizer,
                      train=dataclasses.replace(recipe.train, epochs=1, batch_size=32), compile_model=True,
                      compile_backend="aot_eager")
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"(?i)graph break|data-dependent|unsupported"):
        trainer.rehearse(torch.full((2,), 0.1))


class GraphOps:
    """A backend that records the aten ops of each forward graph it is handed, then runs it eagerly."""

    def __init__(self) -> None:
        self.graph_ops: list[set[str]] = []

    def __call__(self, gm, example_inputs):
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        def forward_compiler(fx, _inputs):
            self.graph_ops.append({str(n.target) for n in fx.graph.nodes if n.op == "call_function"})
            return make_boxed_func(fx)

        return aot_autograd(fw_compiler=forward_compiler,
                            bw_compiler=lambda fx, _inputs: make_boxed_func(fx))(gm, example_inputs)


@pytest.mark.parametrize("recipe_name", ["classic", "fast94"])
def test_the_steps_graph_holds_augmentation_forward_and_loss_and_trains_as_the_eager_step(
        recipe_name, make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=96, test=60)
    backend = GraphOps()
    compiled, lr, momentum = compiled_trainer(recipe_name, data, backend, epochs=1)
    eager, _, _ = compiled_trainer(recipe_name, data, "aot_eager", epochs=1)
    eager.batch_loss = eager._batch_loss               # the same trainer, run op by op
    torch._dynamo.reset()
    ours, theirs = compiled.run(0, lr, momentum), eager.run(0, lr, momentum)
    train_graph = next(ops for ops in backend.graph_ops if any("convolution" in op for op in ops)
                       and any("masked_fill" in op or "gather" in op or "index" in op for op in ops))
    assert any("log_softmax" in op for op in train_graph), "the loss is in the training graph"
    assert ours.epochs[-1].train_loss == pytest.approx(theirs.epochs[-1].train_loss, rel=1e-4)
    for a, b in zip(compiled.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_selective_tta_compiles_its_shapes_in_the_rehearsal_and_never_reads_the_host(make_synthetic_cifar10):
    from tests.support.host_sync import HostSyncCounter

    backend = CountingBackend("aot_eager")
    trainer, lr, momentum = compiled_trainer("fast94", make_synthetic_cifar10(train=96, test=60), backend)
    trainer.config = dataclasses.replace(trainer.config, tta="selective", tta_share=0.3)
    assert_measured_runs_compile_nothing(trainer, backend, lr, momentum)
    trainer.forward = trainer.model               # a dispatch mode sees eager ops only
    with HostSyncCounter() as counter:
        trainer.evaluate()
    assert counter.syncs == [], counter.report()
