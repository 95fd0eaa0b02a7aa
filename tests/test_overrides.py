"""Train-command flags for schedules and extensions, and the classic assignment recipe."""
import argparse
import json

import pytest
import torch

from speedrun.bench.harness import run_benchmark
from speedrun.cli import extension_flags as extensions_cli
from speedrun.cli.extension_flags import (
    CommandLineSchedule,
    add_extension_arguments,
    apply_training_flags,
    extensions_from_args,
    schedule_spec_from_args,
    with_peak_lr,
)
from speedrun.cli.harness_flags import add_harness_arguments, options_from_args
from speedrun.cli.recipe_flags import add_recipe_arguments, recipe_from_args
from speedrun.cli.schedule_flags import schedule_from_args
from speedrun.extensions.plateau import PlateauConfig
from speedrun.extensions.snapshots import SnapshotEnsembleConfig
from speedrun.extensions.swa import SWAConfig
from speedrun.recipes import CLASSIC, ScheduleSpec
from speedrun.recipes.assignment import assignment_recipe
from speedrun.results.records import read_record
from tests.support.trainers import TINY

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

ASSIGNMENT = assignment_recipe()


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_harness_arguments(parser)
    add_recipe_arguments(parser)
    add_extension_arguments(parser)
    return parser.parse_args(list(argv))


def test_extension_flags_become_configs():
    args = parse("--swa-epochs", "4", "--swa-lr", "0.05", "--swa-anneal-epochs", "2", "--swa-anneal-strategy", "linear",
                 "--plateau", "--plateau-patience", "3", "--plateau-metric", "test_acc")
    assert extensions_from_args(args) == (PlateauConfig(metric="test_acc", patience=3),
                                          SWAConfig(4, 0.05, anneal_epochs=2, anneal_strategy="linear"))
    assert extensions_from_args(parse("--snapshot-ensemble")) == (SnapshotEnsembleConfig(),)
    assert extensions_from_args(parse("--snapshot-epochs", "10,30,70")) == (SnapshotEnsembleConfig((10, 30, 70)),)
    assert extensions_from_args(parse()) == ()


@pytest.mark.parametrize("argv,match", [
    (["--swa-epochs", "4"], "--swa-lr"),
    (["--swa-anneal-epochs", "2"], "--swa-anneal-epochs"),
    (["--plateau-patience", "3"], "--plateau"),
    (["--swa-epochs", "2", "--swa-lr", "0.1", "--snapshot-ensemble"], "choose one"),
    (["--snapshot-epochs", "a,b"], "--snapshot-epochs"),
])
def test_inconsistent_extension_flags_are_named(argv, match):
    with pytest.raises(ValueError, match=match):
        extensions_from_args(parse(*argv))


def test_the_parser_has_the_schedule_flags_and_accepts_max_lr_auto():
    parser = argparse.ArgumentParser()
    add_extension_arguments(parser)
    assert parser.parse_args(["--schedule", "cyclic_lr", "--mode", "triangular2"]).mode == "triangular2"
    assert parser.parse_args(["--max-lr", "auto"]).max_lr == "auto"
    assert parser.parse_args(["--max-lr", "0.3"]).max_lr == 0.3
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-lr", "lots"])


def test_any_policy_and_its_parameters_from_the_command_line():
    args = parse("--schedule", "cyclic_lr", "--base-lr", "0.01", "--max-lr", "0.1", "--mode", "triangular2",
                 "--step-size-up", "2ep")
    spec = schedule_spec_from_args(args, CLASSIC, max_lr=args.max_lr)
    assert isinstance(spec, CommandLineSchedule) and spec.name == "cyclic_lr"
    built = spec.build(400, 50)
    direct = schedule_from_args(args, total_steps=400, steps_per_epoch=50)
    assert torch.equal(built.lr, direct.lr) and built.params["mode"] == "triangular2"


def test_without_schedule_only_max_lr_may_change_the_recipes_curve():
    with pytest.raises(ValueError, match=r"--base-lr.*--schedule"):
        schedule_spec_from_args(parse("--base-lr", "0.1"), CLASSIC)
    spec = schedule_spec_from_args(parse("--max-lr", "0.2"), CLASSIC, max_lr=0.2)
    assert spec.knots_as_fraction and max(lr for _, lr in spec.params["knots"]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="max_lr"):
        schedule_spec_from_args(parse("--schedule", "step_lr", "--base-lr", "0.1", "--step-size", "5"), CLASSIC,
                                max_lr=0.3)


def test_with_peak_lr_keeps_the_shape_of_a_piecewise_schedule():
    spec = with_peak_lr(ASSIGNMENT.schedule, 0.8)
    assert [lr for _, lr in spec.params["knots"]] == pytest.approx([0.08, 0.8, 0.08])
    assert with_peak_lr(ScheduleSpec("one_cycle_lr", {"max_lr": 0.1}), 0.5).params["max_lr"] == 0.5
    with pytest.raises(ValueError, match="--schedule"):
        with_peak_lr(ScheduleSpec("step_lr", {"base_lr": 0.1, "step_size": 3}), 0.5)


def test_max_lr_auto_runs_the_range_test_and_rescales_the_recipe(monkeypatch):
    calls = []

    def fake_range_test(recipe, options, data, **_):
        calls.append(recipe.name)
        return 0.3

    monkeypatch.setattr(extensions_cli, "resolve_auto_max_lr", fake_range_test)
    args = parse("--recipe", "classic", "--max-lr", "auto")
    recipe = apply_training_flags(args, ASSIGNMENT, options_from_args(args))
    assert calls == ["assignment"]
    assert [lr for _, lr in recipe.schedule.params["knots"]] == pytest.approx([0.03, 0.3, 0.03])
    args = parse("--schedule", "cyclic_lr", "--max-lr", "auto", "--step-size-up", "1ep")
    spec = apply_training_flags(args, CLASSIC, options_from_args(args)).schedule
    assert spec.flags["max_lr"] == 0.3 and spec.flags["base_lr"] == pytest.approx(0.3 / 4)


def test_bad_schedule_flags_fail_before_any_range_test(monkeypatch):
    monkeypatch.setattr(extensions_cli, "resolve_auto_max_lr", lambda *a, **k: pytest.fail("range test ran"))
    with pytest.raises(ValueError, match="max_lr"):
        args = parse("--schedule", "cosine_annealing_lr", "--max-lr", "auto")
        apply_training_flags(args, CLASSIC, options_from_args(args))
    with pytest.raises(ValueError, match="--swa-epochs"):
        args = parse("--swa-epochs", "30", "--swa-lr", "0.1")
        apply_training_flags(args, CLASSIC, options_from_args(args))


def test_a_run_with_command_line_schedule_and_swa_writes_a_valid_record(make_synthetic_cifar10, tmp_path):
    args = parse("--device", "cpu", "--epochs", "3", "--batch-size", "32", "--tta", "none", "--out", str(tmp_path),
                 "--schedule", "cosine_annealing_warm_restarts", "--base-lr", "0.1", "--T-0", "1ep", "--T-mult", "2",
                 "--swa-epochs", "2", "--swa-lr", "0.02")
    recipe = recipe_from_args(args).replace(model=TINY)
    recipe = apply_training_flags(args, recipe, options_from_args(args), log=lambda _: None)
    record = run_benchmark(recipe, options_from_args(args), data=make_synthetic_cifar10(train=128, test=32),
                           log=lambda _: None, command=["test"])
    saved = read_record(record["_path"])
    assert saved["config"]["recipe"]["schedule"]["name"] == "cosine_annealing_warm_restarts"
    (swa,) = saved["config"]["recipe"]["extensions"]
    assert (swa["epochs"], swa["swa_lr"]) == (2, 0.02)
    assert saved["runs"][0]["status"] == "ok" and saved["runs"][0]["final_test_acc"] is not None
    json.dumps(saved)


def test_the_assignment_recipe():
    assert (ASSIGNMENT.name, ASSIGNMENT.target, ASSIGNMENT.train.epochs, ASSIGNMENT.train.batch_size) == \
        ("assignment", 0.90, 24, 512)
    assert (ASSIGNMENT.augment.crop_padding, ASSIGNMENT.augment.flip, ASSIGNMENT.augment.cutout_size) == (4, True, 8)
    steps_per_epoch = 97
    lr = ASSIGNMENT.schedule.build(24 * steps_per_epoch, steps_per_epoch).lr
    assert float(lr[0]) == pytest.approx(0.04)
    assert int(lr.argmax()) == 5 * steps_per_epoch and float(lr.max()) == pytest.approx(0.4)
    assert float(lr[-1]) == pytest.approx(0.04, abs=1e-3)   # ends at the lower bound: no annihilation
    assert float(lr.min()) == pytest.approx(0.04)
    assert torch.all(lr[:5 * steps_per_epoch].diff() > 0) and torch.all(lr[5 * steps_per_epoch:].diff() < 0)
