"""Train flags to a run's settings (speedrun.overrides): schedules and extensions from the command line,
--max-lr auto, and the classic assignment recipe."""
import argparse
import json

import pytest
import torch

import speedrun.bench.lr_find as lr_find
from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.errors import SettingError, SpeedrunError
from speedrun.extensions.plateau import PlateauConfig
from speedrun.extensions.snapshots import SnapshotEnsembleConfig
from speedrun.extensions.swa import SWAConfig
from speedrun.overrides import (
    EXTENSIONS,
    SCHEDULE,
    add_train_flags,
    schedule_of,
    settings_from_flags,
    train_parser,
    train_settings,
)
from speedrun.recipes import CLASSIC, ScheduleSpec
from speedrun.recipes.assignment import assignment_recipe
from speedrun.results.records import read_record
from speedrun.training.range_test import LRFinderConfig
from tests.support.trainers import TINY

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

ASSIGNMENT = assignment_recipe()


def parse(*argv):
    return train_parser().parse_args(list(argv))


def extensions(*argv):
    return settings_from_flags(list(argv), resolve_auto=False).recipe.extensions


def test_extension_flags_become_configs():
    assert extensions("--swa-epochs", "4", "--swa-lr", "0.05", "--swa-anneal-epochs", "2", "--swa-anneal-strategy",
                      "linear", "--plateau", "--plateau-patience", "3", "--plateau-metric", "test_acc") == \
        (SWAConfig(4, 0.05, anneal_epochs=2, anneal_strategy="linear"), PlateauConfig(metric="test_acc", patience=3))
    restarts = ("--schedule", "cosine_annealing_warm_restarts", "--base-lr", "0.1", "--T-0", "1ep")
    assert extensions(*restarts, "--snapshot-ensemble") == (SnapshotEnsembleConfig(),)
    assert extensions("--epochs", "70", "--snapshot-epochs", "10,30,70") == (SnapshotEnsembleConfig((10, 30, 70)),)
    assert extensions("--plateau") == (PlateauConfig(),)
    assert extensions() == ()


def test_an_extensions_flag_turns_it_on():
    assert extensions("--plateau-patience", "3") == (PlateauConfig(patience=3),)
    assert extensions("--plateau-threshold-mode", "abs", "--plateau-eps", "0") == \
        (PlateauConfig(threshold_mode="abs", eps=0.0),)
    flags = {section.key: section.flags() for section in EXTENSIONS}
    assert flags["swa"] == {"epochs": "--swa-epochs", "swa_lr": "--swa-lr", "anneal_epochs": "--swa-anneal-epochs",
                            "anneal_strategy": "--swa-anneal-strategy"}
    assert flags["snapshot"] == {"cycle_end_epochs": "--snapshot-epochs"}
    assert flags["plateau"]["min_lr"] == "--plateau-min-lr" and flags["plateau"]["metric"] == "--plateau-metric"


@pytest.mark.parametrize("argv,match", [
    (["--swa-epochs", "4"], "--swa-lr is needed for SWA: give --swa-epochs and --swa-lr together"),
    (["--swa-lr", "0.1"], "--swa-epochs is needed for SWA"),
    (["--swa-anneal-epochs", "2"], "--swa-epochs is needed for SWA"),
    (["--swa-epochs", "2", "--swa-lr", "0.1", "--snapshot-ensemble"], "choose one"),
    (["--swa-epochs", "2", "--swa-lr", "0.1", "--snapshot-epochs", "5"], "choose one"),
    (["--snapshot-epochs", "a,b"], "--snapshot-epochs"),
    (["--snapshot-epochs", "30,10"], r"--snapshot-epochs must be strictly increasing"),
    (["--snapshot-epochs", "10,30"], r"--snapshot-epochs go past the run's 24 epochs"),
    (["--plateau-factor", "2"], "--plateau-factor"),
    (["--plateau-metric", "val_loss"], "--plateau-metric"),
    (["--swa-epochs", "30", "--swa-lr", "0.1"], "--swa-epochs 30 needs a whole --epochs"),
])
def test_inconsistent_extension_flags_are_named(argv, match):
    with pytest.raises(SpeedrunError, match=match):
        extensions(*argv)


def test_the_parser_has_the_schedule_flags_and_accepts_max_lr_auto():
    assert getattr(parse("--schedule", "cyclic_lr", "--mode", "triangular2"), SCHEDULE.dest("mode")) == "triangular2"
    assert getattr(parse("--max-lr", "auto"), SCHEDULE.dest("max_lr")) == "auto"
    assert getattr(parse("--max-lr", " AUTO "), SCHEDULE.dest("max_lr")) == "auto"
    assert getattr(parse("--max-lr", "0.3"), SCHEDULE.dest("max_lr")) == 0.3
    with pytest.raises(SpeedrunError, match="--max-lr"):
        parse("--max-lr", "lots")
    with pytest.raises(SpeedrunError, match="--base-lr"):
        parse("--base-lr", "auto")                   # only --max-lr takes auto
    exiting = argparse.ArgumentParser()             # add_train_flags on a plain parser: argparse's exit
    add_train_flags(exiting)
    assert getattr(exiting.parse_args(["--max-lr", "auto"]), SCHEDULE.dest("max_lr")) == "auto"
    with pytest.raises(SystemExit):
        exiting.parse_args(["--max-lr", "lots"])


def test_any_policy_and_its_parameters_from_the_command_line():
    argv = ["--schedule", "cyclic_lr", "--base-lr", "0.01", "--max-lr", "0.1", "--mode", "triangular2",
            "--step-size-up", "2ep"]
    spec = settings_from_flags(argv, resolve_auto=False).recipe.schedule
    assert spec == ScheduleSpec("cyclic_lr", base_lr=0.01, max_lr=0.1, mode="triangular2", step_size_up="2ep")
    assert spec == schedule_of(CLASSIC, parse(*argv))
    built = spec.build(400, 50)
    from speedrun.schedules import cyclic_lr
    assert torch.equal(built.lr, cyclic_lr(400, 0.01, 0.1, step_size_up=100, mode="triangular2").lr)
    assert built.params["mode"] == "triangular2"


def test_without_schedule_only_max_lr_and_the_warmup_may_change_the_recipes_schedule():
    with pytest.raises(SpeedrunError, match=r"--base-lr.*--schedule"):
        schedule_of(CLASSIC, parse("--base-lr", "0.1"))
    with pytest.raises(SpeedrunError, match=r"--interval.*--schedule"):
        settings_from_flags(["--interval", "epoch"], resolve_auto=False)
    spec = schedule_of(CLASSIC, parse("--max-lr", "0.2"))
    assert spec.knots_as_fraction and max(lr for _, lr in spec.knots) == pytest.approx(0.2)
    assert [pos for pos, _ in spec.knots] == [pos for pos, _ in CLASSIC.schedule.knots]
    warmed = schedule_of(CLASSIC, parse("--warmup", "2ep", "--warmup-mode", "constant"))
    assert (warmed.warmup, warmed.warmup_mode, warmed.knots) == ("2ep", "constant", CLASSIC.schedule.knots)
    with pytest.raises(SpeedrunError, match="--max-lr is not a parameter of schedule 'step_lr'"):
        settings_from_flags(["--schedule", "step_lr", "--base-lr", "0.1", "--step-size", "5", "--max-lr", "0.3"],
                            resolve_auto=False)


def test_with_peak_keeps_the_shape_of_a_piecewise_schedule():
    spec = ASSIGNMENT.schedule.with_peak(0.8)
    assert [lr for _, lr in spec.knots] == pytest.approx([0.08, 0.8, 0.08])
    assert [pos for pos, _ in spec.knots] == [pos for pos, _ in ASSIGNMENT.schedule.knots]
    assert spec.knots_as_fraction and spec.name == "piecewise_linear"
    assert ScheduleSpec("one_cycle_lr", max_lr=0.1).with_peak(0.5).max_lr == 0.5
    with pytest.raises(SettingError, match=r"^max_lr has nothing to set in schedule 'step_lr'"):
        ScheduleSpec("step_lr", base_lr=0.1, step_size=3).with_peak(0.5)
    with pytest.raises(SettingError, match="max_lr"):
        ScheduleSpec("piecewise_linear", knots=((0, 0.0), (10, 0.0))).with_peak(0.5)
    # On the command line the same refusal names the flag.
    step = CLASSIC.replace(schedule=ScheduleSpec("step_lr", base_lr=0.1, step_size=3))
    with pytest.raises(SpeedrunError, match=r"^--max-lr has nothing to set"):
        schedule_of(step, parse("--max-lr", "0.5"))


def test_max_lr_auto_runs_the_range_test_and_rescales_the_recipe(monkeypatch):
    calls = []

    def fake_range_test(recipe, options, data, **_):
        calls.append(recipe.name)
        return 0.3

    monkeypatch.setattr(lr_find, "resolve_auto_max_lr", fake_range_test)
    recipe = train_settings(parse("--recipe", "assignment", "--max-lr", "auto"), log=lambda _: None).recipe
    assert calls == ["assignment"]
    assert [lr for _, lr in recipe.schedule.knots] == pytest.approx([0.03, 0.3, 0.03])
    spec = train_settings(parse("--schedule", "cyclic_lr", "--max-lr", "auto", "--step-size-up", "1ep"),
                          log=lambda _: None).recipe.schedule
    assert calls == ["assignment", "classic"]
    assert spec.max_lr == 0.3 and spec.base_lr == pytest.approx(0.3 / LRFinderConfig().cyclic_divisor)
    given_base = train_settings(parse("--schedule", "cyclic_lr", "--max-lr", "auto", "--base-lr", "0.01"),
                                log=lambda _: None).recipe.schedule
    assert (given_base.max_lr, given_base.base_lr) == (0.3, 0.01)
    # Checking only: no range test, and a stand-in peak that is never trained with.
    train_settings(parse("--max-lr", "auto"), resolve_auto=False)
    assert len(calls) == 3
    with pytest.raises(SpeedrunError, match="--max-lr auto"):
        schedule_of(CLASSIC, parse("--max-lr", "auto"))


@pytest.mark.parametrize("argv,match", [
    (["--schedule", "cosine_annealing_lr", "--max-lr", "auto"], "--max-lr is not a parameter"),
    (["--max-lr", "auto", "--swa-epochs", "30", "--swa-lr", "0.1"], "--swa-epochs"),
    (["--max-lr", "auto", "--base-lr", "0.1"], r"--base-lr.*--schedule"),
    (["--max-lr", "auto", "--schedule", "cyclic_lr", "--step-size-up", "1.5", "--T-0", "3"], "--T-0"),
])
def test_bad_schedule_flags_fail_before_any_range_test(monkeypatch, argv, match):
    monkeypatch.setattr(lr_find, "resolve_auto_max_lr", lambda *a, **k: pytest.fail("range test ran"))
    with pytest.raises(SpeedrunError, match=match):
        train_settings(parse(*argv), resolve_auto=False)
    with pytest.raises(SpeedrunError, match=match):
        train_settings(parse(*argv))


def test_a_run_with_command_line_schedule_and_swa_writes_a_valid_record(make_synthetic_cifar10, tmp_path):
    args = parse("--device", "cpu", "--epochs", "3", "--batch-size", "32", "--tta", "none", "--out", str(tmp_path),
                 "--train-subset", "128", "--schedule", "cosine_annealing_warm_restarts", "--base-lr", "0.1",
                 "--T-0", "1ep", "--T-mult", "2", "--swa-epochs", "2", "--swa-lr", "0.02")
    settings = train_settings(args, log=lambda _: None)
    assert isinstance(settings.options, HarnessOptions) and settings.options.out == str(tmp_path)
    recipe = settings.recipe.replace(model=TINY)
    record = run_benchmark(recipe, settings.options, data=make_synthetic_cifar10(train=128, test=32),
                           log=lambda _: None, command=["test"])
    saved = read_record(record["_path"])
    schedule = saved["config"]["recipe"]["schedule"]
    assert schedule["name"] == "cosine_annealing_warm_restarts" and (schedule["T_0"], schedule["T_mult"]) == ("1ep", 2)
    assert ScheduleSpec.from_dict(schedule) == recipe.schedule
    (swa,) = saved["config"]["recipe"]["extensions"]
    assert (swa["epochs"], swa["swa_lr"]) == (2, 0.02)
    assert saved["runs"][0]["status"] == "ok" and saved["runs"][0]["final_test_acc"] is not None
    json.dumps(saved)


def test_no_record_writes_none():
    assert train_settings(parse("--no-record")).options.out is None
    assert train_settings(parse()).options.out == HarnessOptions().out


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
    # --epochs keeps the shape: the knots are fractions of the run.
    assert ASSIGNMENT.schedule.knots_as_fraction
    halved = ASSIGNMENT.schedule.build(12 * 96, 96).lr
    assert float(halved.max()) == pytest.approx(0.4) and int(halved.argmax()) == 5 * 96 // 2


@pytest.mark.parametrize("flags, peak, decay, said", [
    (["--optimizer", "adam"], 1e-3, 0.0, ["peak lr 0.001", "weight decay 0"]),
    (["--optimizer", "adamw", "--recipe", "fast94"], 1e-3, 1e-2, ["peak lr 0.001", "weight decay 0.01"]),
    (["--optimizer", "adam", "--max-lr", "0.01"], 0.01, 0.0, ["weight decay 0"]),
    (["--optimizer", "adam", "--weight-decay", "0.1"], 1e-3, 0.1, ["peak lr 0.001"]),
    (["--optimizer", "adam", "--max-lr", "0.01", "--weight-decay", "0.1"], 0.01, 0.1, []),
    (["--optimizer", "sgd"], 0.4, 5e-4, []),
])
def test_an_optimizer_the_recipe_was_not_made_for_gets_its_own_rate_and_decay_and_says_so(flags, peak, decay, said):
    lines: list[str] = []
    settings = settings_from_flags(flags, resolve_auto=False, log=lines.append)
    knots = settings.recipe.schedule.knots
    assert max(lr for _, lr in knots) == pytest.approx(peak)
    assert settings.recipe.optimizer.weight_decay == pytest.approx(decay)
    if said:
        assert len(lines) == 1 and lines[0].startswith(f"--optimizer {flags[1]}: the recipe's rates were made for sgd")
        assert all(part in lines[0] for part in said)
    else:
        assert lines == []


def test_a_base_lr_policy_is_set_at_the_optimizers_rate_with_its_floor_scaled_along():
    settings = settings_from_flags(["--recipe", "classic", "--optimizer", "rmsprop", "--schedule", "cosine_annealing_lr",
                                    "--base-lr", "0.4", "--eta-min", "0.04"], resolve_auto=False, log=lambda _: None)
    assert settings.recipe.schedule.base_lr == 0.4, "a rate given on the command line is kept"
    from speedrun.overrides import _peak_at
    spec = _peak_at(settings.recipe.schedule, 0.01)
    assert spec.base_lr == 0.01 and spec.eta_min == pytest.approx(0.001)


def test_a_changed_recipe_is_described_as_run_and_an_unchanged_one_keeps_its_own_text():
    changed = settings_from_flags(["--epochs", "3", "--batch-size", "128", "--schedule", "one_cycle_lr", "--max-lr", "0.4",
                                   "--swa-epochs", "1", "--swa-lr", "0.01"], resolve_auto=False).recipe
    assert changed.description == ("classic as run: 3 epochs at batch 128, sgd (weight decay 0.0005), one_cycle_lr "
                                   "peaking at 0.4, with SWA")
    assert changed.name == "classic", "still the recipe it was made from, by name"
    same = settings_from_flags([], resolve_auto=False).recipe
    assert same.description.startswith("Page's ResNet-9") and "24" in same.description
