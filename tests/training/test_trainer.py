"""Behaviour of one training run: it learns, it records divergence, it stays on the device."""
import dataclasses

import pytest
import torch

from speedrun.data.augment import AugmentConfig
from speedrun.data.device_data import DeviceData
from speedrun.models.resnet9 import ResNet9Config
from speedrun.parameters import OptimizerConfig
from speedrun.recipes import RECIPES, get_recipe
from speedrun.training.config import TrainConfig
from speedrun.training.evaluation import evaluate, tta_views
from speedrun.training.hooks import RunHooks
from speedrun.training.trainer import Trainer

TINY = ResNet9Config(widths=(8, 16, 16, 32))       # for mechanics: fast, learns little
SMALL = ResNet9Config(widths=(16, 32, 64, 128))     # for learning on real data
CPU = torch.device("cpu")


def make_trainer(data, *, epochs=2, batch_size=64, compile_model=False, extensions=(), model=TINY, **train):
    return Trainer(model, DeviceData.from_cifar(data, CPU), augment=AugmentConfig(), optimizer=OptimizerConfig(),
                   train=TrainConfig(epochs=epochs, batch_size=batch_size, **train),
                   compile_model=compile_model, extensions=extensions)


def one_cycle(trainer, peak=0.4):
    total = trainer.total_steps
    peak_at = max(1, total // 5)
    up = torch.linspace(0, peak, peak_at + 1)[:-1]
    return torch.cat([up, torch.linspace(peak, 0, total - peak_at)])


@pytest.mark.slow
def test_a_short_real_run_beats_chance_by_far(real_cifar10):
    # 2048 real images, 3 epochs of a quarter-width ResNet-9: about 10 s on 2 idle CPU cores.
    data = real_cifar10.subset(2048, 500)
    trainer = make_trainer(data, epochs=3, batch_size=128, model=SMALL)
    result = trainer.run(0, one_cycle(trainer), target=0.99)
    assert result.status == "ok" and len(result.epochs) == 3
    assert result.final_test_acc > 0.30  # chance is 0.10
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert not result.reached_target and result.time_to_target_s is None
    assert result.train_time_s == pytest.approx(result.epochs[-1].elapsed_s)


def test_stops_at_target_and_reports_time(make_synthetic_cifar10):
    trainer = make_trainer(make_synthetic_cifar10(train=128, test=32), epochs=3)
    result = trainer.run(0, one_cycle(trainer), target=0.01)
    assert result.reached_target and len(result.epochs) == 1
    assert result.time_to_target_s == result.epochs[0].elapsed_s > 0


def test_divergence_is_recorded_not_raised(make_synthetic_cifar10):
    trainer = make_trainer(make_synthetic_cifar10(train=128, test=32), epochs=3, batch_size=32)
    result = trainer.run(0, torch.full((trainer.steps_per_epoch * 3,), 1e30))
    assert result.status == "diverged" and "non-finite" in result.error
    assert result.final_test_acc is None
    assert result.epochs[-1].train_loss is None  # JSON-safe


def test_same_seed_same_run_different_seed_differs(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=128, test=32)
    trainer = make_trainer(data, epochs=1)
    lr = one_cycle(trainer)
    a, b, c = trainer.run(3, lr), trainer.run(3, lr), trainer.run(4, lr)
    assert a.epochs[0].train_loss == b.epochs[0].train_loss
    assert a.epochs[0].train_loss != c.epochs[0].train_loss


def test_compiled_step_compiles_once_and_uses_each_steps_lr(make_synthetic_cifar10):
    """Changing the lr every step must neither recompile nor be missed by the optimizer."""
    compiled = []

    def counting_backend(gm, example_inputs):
        compiled.append(gm)
        return gm.forward

    used = []

    @dataclasses.dataclass(frozen=True)
    class RecordLR:
        def make(self, trainer, opt):
            return RunHooks(after_step=[lambda: used.append(opt.current_lr().clone())])

    trainer = Trainer(TINY, DeviceData.from_cifar(make_synthetic_cifar10(train=128, test=32), CPU),
                      augment=AugmentConfig(), optimizer=OptimizerConfig(),
                      train=TrainConfig(epochs=3, batch_size=32), compile_model=True,
                      compile_backend=counting_backend, extensions=(RecordLR(),))
    lr = torch.linspace(0.2, 0.01, trainer.steps_per_epoch * 3)
    torch._dynamo.reset()
    result = trainer.run(0, lr)
    assert result.status == "ok"
    assert len(compiled) == 2  # the training forward (with its backward) and the eval forward, once each
    torch.testing.assert_close(torch.stack(used), lr)


def test_test_views_weights_sum_to_one_and_flip_is_exact():
    x = torch.randn(2, 3, 8, 8)
    for mode, count in (("none", 1), ("flip", 2), ("multi", 6)):
        views = tta_views(x, mode)
        assert len(views) == count and sum(w for w, _ in views) == pytest.approx(1.0)
    assert torch.equal(tta_views(x, "flip")[1][1], x.flip(-1))


def test_evaluate_counts_correct_predictions():
    images = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    labels = torch.tensor([1] * 7 + [0] * 3)
    def always_one(x):
        return torch.tensor([[0.0, 1.0]]).expand(len(x), 2)
    assert float(evaluate(always_one, images, labels, batch_size=4, tta="flip")) == pytest.approx(0.7)


def test_batch_larger_than_training_set_is_a_clear_error(make_synthetic_cifar10):
    with pytest.raises(ValueError, match="--batch-size"):
        make_trainer(make_synthetic_cifar10(train=32, test=8), batch_size=64)


@pytest.mark.gpu
@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_an_epoch_never_syncs_with_the_host(recipe_name, make_synthetic_cifar10):
    """Every recipe's epoch (its extensions' per-step hooks included) runs with no host sync."""
    recipe = get_recipe(recipe_name)
    model = dataclasses.replace(recipe.model, widths=tuple(max(8, w // 8) for w in recipe.model.widths))
    data = DeviceData.from_cifar(make_synthetic_cifar10(train=1024, test=64), torch.device("cuda"))
    trainer = Trainer(model, data, augment=recipe.augment, optimizer=recipe.optimizer,
                      train=dataclasses.replace(recipe.train, batch_size=256), compile_model=True,
                      extensions=recipe.extensions)
    schedule = recipe.schedule.build(trainer.total_steps, trainer.steps_per_epoch)
    lr = schedule.lr.to("cuda", torch.float32)
    momentum = None if schedule.momentum is None else schedule.momentum.to("cuda", torch.float32)
    trainer.rehearse(lr, momentum)
    trainer.initialize(0)
    run = trainer.start_run(0, lr, momentum)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.train_epoch(run, 1)
        trainer.end_epoch(run, 1, evaluate=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


def test_input_kernel_switch_trains_the_same_run(make_synthetic_cifar10):
    """--input-kernel only changes how a batch is built: same seed, same run (CPU takes the reference)."""
    data = make_synthetic_cifar10(train=128, test=32)
    plain, fused = make_trainer(data, epochs=2, batch_size=32), make_trainer(data, epochs=2, batch_size=32,
                                                                            input_kernel=True)
    lr = one_cycle(plain)
    a, b = plain.run(7, lr), fused.run(7, lr)
    assert [e.train_loss for e in a.epochs] == [e.train_loss for e in b.epochs]
    assert a.final_test_acc == b.final_test_acc


def test_long_cpu_work_reports_progress_without_reading_the_device(make_synthetic_cifar10):
    from speedrun.instruments.timing import ProgressLog
    from tests.support.host_sync import HostSyncCounter

    said = []
    trainer = make_trainer(make_synthetic_cifar10(train=128, test=32), epochs=1, batch_size=32)
    trainer.progress = ProgressLog(said.append, every_s=0.0)
    trainer.initialize(0)
    run = trainer.start_run(0, one_cycle(trainer))
    with HostSyncCounter() as counter:
        trainer.train_epoch(run, 1)
    assert said == ["  ... epoch 1, step: 1/4", "  ... epoch 1, step: 2/4", "  ... epoch 1, step: 3/4"]
    assert counter.syncs == []


def test_progress_is_said_at_most_every_so_many_seconds():
    from speedrun.instruments.timing import ProgressLog

    said = []
    progress = ProgressLog(said.append, every_s=3600.0)
    for step in range(1, 100):
        progress("work", step, 100)
    assert said == []


def test_a_fractional_budget_trains_part_of_its_last_epoch_and_evaluates_after_it(make_synthetic_cifar10):
    trainer = make_trainer(make_synthetic_cifar10(train=256, test=32), epochs=1.5, batch_size=64)
    assert (trainer.steps_per_epoch, trainer.total_steps, trainer.last_epoch) == (4, 6, 2)
    steps = []
    trainer.model.register_forward_pre_hook(lambda m, _inputs: steps.append(1) if m.training else None)
    result = trainer.run(0, torch.linspace(0.1, 0.0, 6))
    assert result.status == "ok" and [e.epoch for e in result.epochs] == [1, 2]
    assert len(steps) == 6, "4 steps, then the half epoch's 2"
    assert result.epochs[-1].test_acc is not None and result.final_test_acc == result.epochs[-1].test_acc
    assert result.epochs[-1].lr == pytest.approx(0.0), "the schedule's last step is the run's last"


@pytest.mark.parametrize("name, groups", [("fast94", 2), ("fast94-whiten_bias_3ep", 3), ("fast94-muon", 4)])
def test_the_optimizer_gets_the_roles_with_equal_hyperparameters_merged(name, groups, make_synthetic_cifar10):
    """fast94's four roles train at two rates; the whitening-bias schedule keeps the stem bias
    its own group; Muon's filters, BN shifts, head and stem bias all differ."""
    recipe = get_recipe(name)
    model = dataclasses.replace(recipe.model, widths=tuple(max(8, w // 16) for w in recipe.model.widths))
    trainer = Trainer(model, DeviceData.from_cifar(make_synthetic_cifar10(train=256, test=32), CPU),
                      augment=recipe.augment, optimizer=recipe.optimizer,
                      train=dataclasses.replace(recipe.train, batch_size=64), compile_model=False,
                      extensions=recipe.extensions)
    assert len(trainer.optimizer_groups()) == groups
    roles = trainer.param_groups()
    assert sorted(id(p) for g in trainer.optimizer_groups() for p in g.params) == sorted(
        id(p) for g in roles for p in g.params), "every parameter is in exactly one group"


def test_without_training_accuracy_the_run_trains_the_same_and_logs_none(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=128, test=32)
    counted, uncounted = make_trainer(data, epochs=2), make_trainer(data, epochs=2, train_accuracy=False)
    lr = torch.full((counted.total_steps,), 0.05)
    a, b = counted.run(0, lr), uncounted.run(0, lr)
    assert all(e.train_acc is not None for e in a.epochs) and all(e.train_acc is None for e in b.epochs)
    assert [e.train_loss for e in a.epochs] == [e.train_loss for e in b.epochs]
    assert a.final_test_acc == b.final_test_acc
    for p, q in zip(counted.model.parameters(), uncounted.model.parameters()):
        assert torch.equal(p, q)


class _Linear(torch.nn.Module):
    """A model whose logits depend on every pixel: views change some answers."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.fc = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_selective_tta_is_multi_for_the_least_confident_share_and_plain_for_the_rest(synthetic_cifar10):
    from speedrun.training.evaluation import predict, selected_count

    images = torch.from_numpy(synthetic_cifar10.train_images[:40]).permute(0, 3, 1, 2).contiguous()
    model = _Linear().eval()
    plain, multi = predict(model, images, "none"), predict(model, images, "multi")
    torch.testing.assert_close(predict(model, images, "selective", tta_share=1.0), multi, rtol=1e-5, atol=1e-5)
    selective = predict(model, images, "selective", tta_share=0.25)
    assert selected_count(40, 0.25) == 10
    changed = (selective != plain).any(1)
    assert int(changed.sum()) == 10, "exactly the selected share gets the other views"
    torch.testing.assert_close(selective[changed], multi[changed], rtol=1e-5, atol=1e-5)
    top2 = plain.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    assert float(margin[changed].max()) <= float(margin[~changed].min()), "the least confident were chosen"
