"""Reduce-on-plateau wiring: the logged metric drives the device lr, and later steps use the reduced rate."""
import pytest
import torch

from extension_helpers import Probe, constant_schedule, tiny_trainer, one_cpu_thread  # noqa: F401
from speedrun.extensions.plateau import PlateauConfig

# An absolute threshold this large makes every epoch after the first "no improvement".
NEVER_IMPROVES = dict(threshold=1e9, threshold_mode="abs", patience=0)


def test_later_steps_run_at_the_reduced_lr(make_synthetic_cifar10):
    probe = Probe()
    plateau = PlateauConfig(metric="train_loss", factor=0.5, **NEVER_IMPROVES)
    trainer = tiny_trainer(make_synthetic_cifar10(train=128, test=32), epochs=4, extensions=(probe, plateau))
    schedule = constant_schedule(trainer, 0.08)
    result = trainer.run(0, schedule)
    per_epoch = probe.epoch_lrs(trainer.steps_per_epoch)
    # Epoch 1 sets the best loss; epoch 2 does not improve -> reduce from epoch 3; again after 3.
    expected = [0.08, 0.08, 0.04, 0.02]
    for lrs, lr in zip(per_epoch, expected):
        assert lrs == pytest.approx([lr] * trainer.steps_per_epoch)
    assert [e.lr for e in result.epochs] == pytest.approx(expected)
    assert torch.equal(schedule, torch.full_like(schedule, 0.08))   # the caller's schedule is not edited


def test_a_second_run_starts_from_the_unreduced_schedule(make_synthetic_cifar10):
    probe = Probe()
    plateau = PlateauConfig(factor=0.5, **NEVER_IMPROVES)
    trainer = tiny_trainer(make_synthetic_cifar10(train=64, test=32), epochs=3, extensions=(probe, plateau))
    schedule = constant_schedule(trainer, 0.08)
    trainer.run(0, schedule)
    trainer.run(1, schedule)
    assert probe.epoch_lrs(trainer.steps_per_epoch)[0] == pytest.approx([0.08] * trainer.steps_per_epoch)


def test_test_accuracy_mode_skips_epochs_without_evaluation(make_synthetic_cifar10):
    probe = Probe()
    plateau = PlateauConfig(metric="test_acc", factor=0.5, **NEVER_IMPROVES)
    trainer = tiny_trainer(make_synthetic_cifar10(train=64, test=32), epochs=5, eval_every=2,
                           extensions=(probe, plateau))
    trainer.run(0, constant_schedule(trainer, 0.08))
    firsts = [lrs[0] for lrs in probe.epoch_lrs(trainer.steps_per_epoch)]
    # Evaluated after epochs 2 and 4 only: best at 2, no improvement at 4 -> reduced from epoch 5.
    assert firsts == pytest.approx([0.08, 0.08, 0.08, 0.08, 0.04])


def test_the_default_watches_training_loss_in_min_mode():
    config = PlateauConfig()
    assert (config.metric, config.mode) == ("train_loss", "min")
    assert PlateauConfig(metric="test_acc").mode == "max"


@pytest.mark.parametrize("kwargs,match", [(dict(metric="val_loss"), "metric"), (dict(factor=1.5), "factor"),
                                          (dict(patience=-1), "patience")])
def test_bad_settings_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PlateauConfig(**kwargs)
