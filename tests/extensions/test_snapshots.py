"""Snapshot ensembles: members taken at cycle ends, the ensemble's logits the mean of its members'."""
import copy

import pytest
import torch

from speedrun.extensions.snapshots import (
    SnapshotEnsembleConfig,
    cycle_ends_from_lr,
    ensemble_logits,
    sgdr_cycle_ends,
)
from speedrun.schedules import cosine_annealing_warm_restarts
from speedrun.training.evaluation import predict
from tests.support.trainers import (
    TINY,
    Probe,
    constant_schedule,
    load_state,
    tiny_trainer,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.mark.parametrize("T_0,T_mult,total,expected", [
    (10, 2, 70, (10, 30, 70)),
    (10, 1, 35, (10, 20, 30, 35)),
    (5, 2, 3, (3,)),
    (1, 2, 3, (1, 3)),
])
def test_sgdr_cycle_ends(T_0, T_mult, total, expected):
    assert sgdr_cycle_ends(T_0, T_mult, total) == expected


def test_sgdr_cycle_ends_rejects_bad_input():
    with pytest.raises(ValueError, match="T_0"):
        sgdr_cycle_ends(0, 1, 10)


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_restarts_found_in_an_sgdr_schedule_match_its_parameters(interval):
    steps_per_epoch, epochs = 5, 14
    T_0 = 2 if interval == "epoch" else 2 * steps_per_epoch
    schedule = cosine_annealing_warm_restarts(steps_per_epoch * epochs, 0.4, T_0=T_0, T_mult=2,
                                              interval=interval, steps_per_epoch=steps_per_epoch)
    assert cycle_ends_from_lr(schedule.lr, steps_per_epoch, epochs) == sgdr_cycle_ends(2, 2, epochs) == (2, 6, 14)


def test_a_mid_epoch_restart_ends_the_cycle_at_the_epoch_before_it():
    schedule = cosine_annealing_warm_restarts(40, 0.4, T_0=13, T_mult=1, interval="step")
    assert cycle_ends_from_lr(schedule.lr, 5, 8) == (2, 5, 7, 8)   # restarts at steps 13, 26, 39


def test_the_ensembles_logits_are_the_mean_of_its_members():
    torch.manual_seed(0)
    model = TINY.build()
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    members = []
    for _ in range(3):
        member = copy.deepcopy(model)
        with torch.no_grad():
            for p in member.parameters():
                p.copy_(torch.randn_like(p) * 0.1)
        members.append([t.clone() for t in member.state_dict().values()])
    each = [predict(load_state(copy.deepcopy(model), m).eval(), images, "flip") for m in members]
    logits = ensemble_logits(copy.deepcopy(model), members, images, tta="flip", batch_size=8)
    torch.testing.assert_close(logits, torch.stack(each).mean(0), rtol=1e-5, atol=1e-6)


def test_a_run_ensembles_the_weights_at_the_schedules_cycle_ends(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=128, test=64)
    probe = Probe()
    trainer = tiny_trainer(data, epochs=3, extensions=(probe, SnapshotEnsembleConfig()))
    spe = trainer.steps_per_epoch
    sgdr = cosine_annealing_warm_restarts(3 * spe, 0.2, T_0=spe, T_mult=2, interval="step")
    result = trainer.run(0, sgdr.lr.float())
    members = [probe.weights[1], probe.weights[3]]   # cycles of 1 and 2 epochs end at epochs 1 and 3
    logits = ensemble_logits(copy.deepcopy(trainer.model), members, trainer.data.test_images, tta="none")
    expected = float((logits.argmax(1) == trainer.data.test_labels).float().mean())
    assert result.final_test_acc == pytest.approx(expected)
    single = float(trainer.evaluate(trainer.forward))
    report = dict(result.extension)
    assert report.pop("snapshot_epochs") == [1, 3]          # (pytest's approx takes no nested list)
    assert report == pytest.approx({"method": "snapshot_ensemble", "snapshots": 2, "single_model_acc": single,
                                    "final_acc": expected, "gain": expected - single})
    for now, last in zip(trainer.model.state_dict().values(), probe.weights[3]):
        assert torch.equal(now, last)   # members were scored in a separate copy


def test_explicit_epochs_are_used_as_given(make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=64, test=32)
    probe = Probe()
    trainer = tiny_trainer(data, epochs=2, extensions=(probe, SnapshotEnsembleConfig((2,))))
    result = trainer.run(0, constant_schedule(trainer, 0.1))
    logits = ensemble_logits(copy.deepcopy(trainer.model), [probe.weights[2]], trainer.data.test_images, tta="none")
    assert result.final_test_acc == pytest.approx(float((logits.argmax(1) == trainer.data.test_labels).float().mean()))


def test_a_schedule_without_restarts_needs_explicit_epochs(make_synthetic_cifar10):
    trainer = tiny_trainer(make_synthetic_cifar10(train=64, test=32), epochs=2, extensions=(SnapshotEnsembleConfig(),))
    with pytest.raises(ValueError, match="no warm restarts"):
        trainer.run(0, constant_schedule(trainer, 0.1))


@pytest.mark.parametrize("ends,match", [((), "non-empty list"), ((3, 2), "increasing"), ((0, 2), "whole number >= 1")])
def test_bad_epochs_are_refused(ends, match):
    with pytest.raises(ValueError, match=match):
        SnapshotEnsembleConfig(ends)
