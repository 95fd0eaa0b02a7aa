"""The fast94-record recipe: the public record's rates in this loop's conventions, its settings, and it learns."""
from __future__ import annotations

import dataclasses

from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.recipes import get_recipe
from speedrun.recipes.fast94_record import BATCH_SIZE, EPOCHS
from tests.support.fast94 import assert_muon_recipe_rates, lr_tensor, make_trainer, tiny


def test_the_groups_take_the_records_rates_per_image_and_its_decay_per_step(make_synthetic_cifar10):
    assert_muon_recipe_rates(get_recipe("fast94-record"), make_synthetic_cifar10(), peak=0.205, bias=0.0573,
                             head=0.5415, decay=1.04e-6)


def test_it_sets_the_records_changes_on_fast94_muon():
    record, muon = get_recipe("fast94-record"), get_recipe("fast94-muon")
    assert (record.train.batch_size, record.train.epochs) == (1536, 7.59) == (BATCH_SIZE, EPOCHS)
    assert record.model.widths == muon.model.widths
    # the record's colour jitter cost accuracy on the copy (results/ablations/*-fast94-record-jitter-*): left out
    assert record.augment == muon.augment and (record.augment.brightness, record.augment.contrast) == (0, 0)
    assert (record.model.activation, record.model.head_pool, record.model.whiten_method,
            record.model.whiten_samples) == ("silu", "window3", "svd", 960)
    assert (record.optimizer.muon_momentum, record.optimizer.momentum, record.optimizer.muon_fp16_momentum,
            record.optimizer.muon_renormalize_every) == (0.655, 0.825, True, 4)
    assert (record.train.label_smoothing, record.train.tta) == (0.09, "selective")
    (bias,) = record.extensions
    assert bias.epochs == 0.19
    assert type(record).from_dict(record.to_dict()) == record


def test_fast94_record_learns_a_small_problem_through_the_harness(make_synthetic_cifar10):
    recipe = tiny(get_recipe("fast94-record"), batch_size=32, epochs=4, widths=(16, 32, 32))
    record = run_benchmark(recipe, HarnessOptions(device="cpu", compile=False, out=None, target=0.99),
                           data=make_synthetic_cifar10(train=256, test=64), log=lambda _: None, command=[])
    (run,) = record["runs"]
    assert run["status"] == "ok"
    assert run["final_test_acc"] >= 0.5, run["final_test_acc"]   # chance 0.1


def test_an_epoch_with_every_record_setting_reads_nothing_back_to_the_host(make_synthetic_cifar10):
    """Jitter, SiLU, the window-3 head, fp16 Muon momentum, renormalizing every 4th step and the bias's
    fractional epochs: an epoch of all of them (and its evaluation's selective TTA) never waits on the host."""
    from tests.support.host_sync import HostSyncCounter

    recipe = tiny(get_recipe("fast94-record"), batch_size=32, epochs=2, widths=(16, 32, 32))
    recipe = recipe.replace(augment=dataclasses.replace(recipe.augment, brightness=0.14, contrast=0.13))
    trainer = make_trainer(recipe, make_synthetic_cifar10(train=256, test=64))
    assert recipe.schedule.build(trainer.total_steps, trainer.steps_per_epoch).momentum is None
    trainer.initialize(0)
    run = trainer.start_run(0, lr_tensor(trainer, recipe))
    with HostSyncCounter() as counter:
        trainer.train_epoch(run, 1)
        trainer.evaluate()
    assert counter.syncs == [], counter.report()
    assert trainer.steps_per_epoch == 8 and 0 < recipe.extensions[0].epochs < 1, "the bias stops inside epoch 1"
