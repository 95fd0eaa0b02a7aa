"""SWA: the running mean of the collected weights, update_bn-equal BN statistics, SWALR-equal lr tail."""
import copy

import pytest
import torch
from torch.optim.swa_utils import SWALR, update_bn

from speedrun.bench.harness import format_extension
from speedrun.data.augment import CIFAR10_MEAN, CIFAR10_STD, normalize
from speedrun.extensions.swa import (
    SWAConfig,
    WeightAverage,
    recompute_batchnorm_statistics,
    swa_phase_lr,
    write_swa_phase,
)
from tests.support.trainers import (
    TINY,
    Probe,
    constant_schedule,
    load_state,
    tiny_trainer,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_the_average_is_the_mean_of_the_collected_weights_and_the_model_is_left_alone():
    torch.manual_seed(0)
    model = TINY.build()
    average = WeightAverage(model)
    collected = []
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
        collected.append([p.detach().clone() for p in model.parameters()])
        average.update()
    assert float(average.count) == 3
    for i, (avg, now) in enumerate(zip(average.model.parameters(), model.parameters())):
        expected = torch.stack([c[i] for c in collected]).mean(0)
        torch.testing.assert_close(avg, expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(now, collected[-1][i])   # the trained model still holds its own weights
    assert average.model is not model


def test_the_first_update_copies_the_weights_exactly():
    torch.manual_seed(1)
    model = TINY.build()
    average = WeightAverage(model)
    with torch.no_grad():
        for p in average.model.parameters():
            p.fill_(123.0)
    average.update()
    for avg, p in zip(average.model.parameters(), model.parameters()):
        assert torch.equal(avg, p)


def test_batchnorm_statistics_equal_torch_update_bn_on_the_same_batches():
    torch.manual_seed(2)
    model = TINY.build()
    with torch.no_grad():   # make the running stats stale, so a missing reset would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(5.0)
                m.running_var.fill_(7.0)
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    ours, theirs = model, copy.deepcopy(model)
    ours.eval()
    recompute_batchnorm_statistics(ours, images, batch_size=32)   # batches of 32, 32, 32, 4
    update_bn([normalize(images[i:i + 32], CIFAR10_MEAN, CIFAR10_STD) for i in range(0, 100, 32)], theirs)
    pairs = [(a, b) for a, b in zip(ours.modules(), theirs.modules()) if isinstance(a, torch.nn.BatchNorm2d)]
    assert pairs
    for a, b in pairs:
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 4
        assert a.momentum == 0.1                  # momenta restored
        assert not torch.allclose(a.running_mean, torch.full_like(a.running_mean, 5.0))
    assert not ours.training                      # training flag restored


def swalr_epoch_lrs(start_lr, config):
    """What torch's SWALR puts in an optimizer whose lr was start_lr, one step() per SWA epoch."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=start_lr)
    scheduler = SWALR(optimizer, swa_lr=config.swa_lr, anneal_epochs=config.anneal_epochs,
                      anneal_strategy=config.anneal_strategy)
    lrs = []
    for _ in range(config.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("anneal_epochs,strategy", [(0, "cos"), (3, "cos"), (3, "linear"), (8, "cos"), (1, "linear")])
def test_the_swa_phase_lr_is_swalr_stepped_once_per_epoch(anneal_epochs, strategy):
    steps_per_epoch, total_epochs = 4, 12
    config = SWAConfig(epochs=6, swa_lr=0.05, anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    original = torch.linspace(0.4, 0.2, steps_per_epoch * total_epochs)
    lr = original.clone()
    write_swa_phase(lr, config, steps_per_epoch=steps_per_epoch, total_epochs=total_epochs)
    start = (total_epochs - config.epochs) * steps_per_epoch
    assert torch.equal(lr[:start], original[:start])   # before the phase: untouched
    expected = torch.tensor(swalr_epoch_lrs(float(original[start]), config)).repeat_interleave(steps_per_epoch)
    torch.testing.assert_close(lr[start:], expected.float(), rtol=1e-6, atol=1e-7)
    once = lr.clone()
    write_swa_phase(lr, config, steps_per_epoch=steps_per_epoch, total_epochs=total_epochs)
    torch.testing.assert_close(lr, once, rtol=0, atol=1e-7)   # idempotent: shared schedule tensors are safe


def test_swa_phase_lr_is_computed_on_the_schedules_device_and_dtype():
    out = swa_phase_lr(torch.tensor(0.3, dtype=torch.float64), SWAConfig(epochs=2, swa_lr=0.1), 3)
    assert out.dtype == torch.float64 and out.shape == (6,)


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=0, swa_lr=0.1), "epochs must be a whole number >= 1"),
    (dict(epochs=2, swa_lr=-1.0), "swa_lr"),
    (dict(epochs=2, swa_lr=0.1, anneal_epochs=-1), "anneal_epochs"),
    (dict(epochs=2, swa_lr=0.1, anneal_strategy="step"), "anneal_strategy"),
])
def test_bad_settings_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SWAConfig(**kwargs)


def test_a_run_with_swa_trains_at_the_swa_lr_and_reports_the_averaged_models_accuracy(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=128, test=64)
    probe = Probe()
    config = SWAConfig(epochs=2, swa_lr=0.01)
    trainer = tiny_trainer(data, epochs=3, extensions=(probe, config))
    schedule = constant_schedule(trainer, 0.2)
    result = trainer.run(0, schedule)
    spe = trainer.steps_per_epoch
    lrs = probe.epoch_lrs(spe)
    assert lrs[0] == pytest.approx([0.2] * spe) and lrs[1] == lrs[2] == pytest.approx([0.01] * spe)

    # Rebuild the expected SWA model by hand: mean of the epoch-2 and epoch-3 weights, BN recomputed.
    expected = load_state(copy.deepcopy(trainer.model), probe.weights[3])
    params = list(expected.parameters())
    index = {id(p): i for i, p in enumerate(expected.state_dict(keep_vars=True).values())}
    with torch.no_grad():
        for p in params:
            i = index[id(p)]
            p.copy_((probe.weights[2][i] + probe.weights[3][i]) / 2)
    recompute_batchnorm_statistics(expected, trainer.data.train_images, batch_size=trainer.config.batch_size)
    expected.eval()
    assert result.final_test_acc == pytest.approx(float(trainer.evaluate(expected)))
    # The run reports what SWA did and its gain over the trained model alone (whose accuracy it also gives).
    single = float(trainer.evaluate(trainer.forward))
    assert result.extension == pytest.approx({"method": "swa", "weights_averaged": 2, "single_model_acc": single,
                                              "final_acc": result.final_test_acc,
                                              "gain": result.final_test_acc - single})
    assert format_extension(result.extension).startswith("swa: averaged the weights of 2 epoch(s); test accuracy: "
                                                         f"single model {single:.4f}, averaged")
    # The trained model keeps the last weights (the average lives in its own copy).
    for now, last in zip(trainer.model.state_dict().values(), probe.weights[3]):
        assert torch.equal(now, last)


def test_swa_longer_than_the_run_is_refused(make_synthetic_cifar10):
    trainer = tiny_trainer(make_synthetic_cifar10(train=64, test=32), epochs=2, extensions=(SWAConfig(3, 0.1),))
    with pytest.raises(ValueError, match="swa epochs"):
        trainer.run(0, constant_schedule(trainer, 0.1))


def test_swa_over_a_fractional_budget_is_refused_naming_the_flag(make_synthetic_cifar10):
    trainer = tiny_trainer(make_synthetic_cifar10(train=64, test=32), epochs=2.5, extensions=(SWAConfig(1, 0.1),))
    with pytest.raises(ValueError, match="--epochs a whole number"):
        trainer.run(0, torch.full((trainer.total_steps,), 0.1))
