"""ScheduleSpec, a schedule as recipe data, and its command-line flags (one per field): epoch
durations, warm-up, and errors that name the field in the library and the flag on the command line."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from speedrun import schedules as S
from speedrun.errors import SettingError, SpeedrunError
from speedrun.overrides import SCHEDULE, schedule_of, settings_from_flags, train_parser
from speedrun.recipes import CLASSIC
from speedrun.schedules import ScheduleSpec
from speedrun.schedules.spec import WHOLE_DURATIONS
from speedrun.settings import parse, settings_of

TOTAL_STEPS, STEPS_PER_EPOCH = 200, 10
# 100 training images in batches of 10 for 20 epochs: the 200 steps of 10 per epoch the tests build.
RUN_OF_200_STEPS = ["--train-subset", "100", "--batch-size", "10", "--epochs", "20"]
PYTHON_ONLY = ("lr_lambda", "scale_fn", "scale_mode")


def spec_of(line: str, recipe=CLASSIC) -> ScheduleSpec:
    """The schedule the flags give ``recipe`` (as ``speedrun schedule`` reads them)."""
    return schedule_of(recipe, train_parser().parse_args(line.split()))


def from_cli(line: str, total_steps: int = TOTAL_STEPS, steps_per_epoch: int = STEPS_PER_EPOCH) -> S.Schedule:
    return spec_of(line).build(total_steps, steps_per_epoch)


def options() -> set[str]:
    return {opt for action in train_parser()._actions for opt in action.option_strings}


def test_every_policy_parameter_has_a_flag() -> None:
    offered = options()
    flags = SCHEDULE.flags()
    for name in S.SCHEDULES:
        for param in S.policy_parameters(name):
            if param not in PYTHON_ONLY:
                assert param in flags, (name, param)
                assert flags[param] == "--" + param.replace("_", "-") and flags[param] in offered, (name, param)
    listed = ["--schedule", "--base-lr", "--max-lr", "--mode", "--gamma", "--step-size", "--milestones", "--T-max",
              "--T-0", "--T-mult", "--eta-min", "--pct-start", "--anneal-strategy", "--div-factor",
              "--final-div-factor", "--three-phase", "--no-three-phase", "--cycle-momentum", "--no-cycle-momentum",
              "--base-momentum", "--max-momentum", "--step-size-up", "--step-size-down", "--knots", "--factor",
              "--start-factor", "--end-factor", "--total-iters", "--power", "--warmup", "--warmup-mode",
              "--warmup-start-factor", "--interval"]
    assert set(listed) <= offered and "--lr" not in offered


def test_every_spec_field_but_knots_as_fraction_is_a_flag() -> None:
    # knots_as_fraction is how a recipe keeps its shape across --epochs; the command line gives positions.
    fields = {f.name for f in dataclasses.fields(ScheduleSpec)}
    assert set(SCHEDULE.flags()) == fields - {"knots_as_fraction"}
    assert {f.name for f, _ in settings_of(ScheduleSpec)} == fields - {"knots_as_fraction"}


def test_flags_default_to_not_given_and_name_their_flags() -> None:
    args = train_parser().parse_args([])
    values = {name: value for name, value in vars(args).items() if name.startswith(f"{SCHEDULE.key}.")}
    assert len(values) == len(SCHEDULE.flags()) and all(value is None for value in values.values())
    assert SCHEDULE.given(args) == {}
    assert SCHEDULE.dest("T_0") == "schedule.T_0"
    assert SCHEDULE.flags()["max_lr"] == "--max-lr" and SCHEDULE.flags()["T_0"] == "--T-0"
    assert SCHEDULE.flags()["name"] == "--schedule"
    assert schedule_of(CLASSIC, args) == CLASSIC.schedule     # nothing given: the recipe's schedule


def test_epoch_suffix_converts_to_steps() -> None:
    spec = spec_of("--schedule cosine_annealing_warm_restarts --base-lr 0.1 --T-0 2ep --T-mult 2")
    assert (spec.T_0, spec.T_mult) == ("2ep", 2)               # kept as given until the step count is known
    schedule = spec.build(TOTAL_STEPS, STEPS_PER_EPOCH)
    assert schedule.params["T_0"] == 20
    assert torch.equal(schedule.lr, S.cosine_annealing_warm_restarts(200, 0.1, 20, 2).lr)
    assert spec.build(400, 20).params["T_0"] == 40


def test_plain_numbers_are_in_interval_units() -> None:
    per_step = from_cli("--schedule step_lr --base-lr 0.1 --step-size 3")
    assert per_step.params["step_size"] == 3 and per_step.interval == "step"
    assert torch.equal(per_step.lr, S.step_lr(200, 0.1, 3).lr)
    per_epoch = from_cli("--schedule step_lr --base-lr 0.1 --step-size 3 --interval epoch")
    assert torch.equal(per_epoch.lr, S.step_lr(200, 0.1, 3, interval="epoch", steps_per_epoch=10).lr)
    assert not torch.equal(per_epoch.lr, per_step.lr)
    in_epochs = from_cli("--schedule step_lr --base-lr 0.1 --step-size 3ep --interval epoch")
    assert torch.equal(in_epochs.lr, per_epoch.lr)
    epochs_per_step = from_cli("--schedule step_lr --base-lr 0.1 --step-size 3ep")
    assert epochs_per_step.params["step_size"] == 30


def test_milestones_and_knots() -> None:
    multi_spec = spec_of("--schedule multistep_lr --base-lr 1 --milestones 5ep,120 --gamma 0.5")
    assert multi_spec.milestones == ("5ep", 120.0)
    multi = multi_spec.build(TOTAL_STEPS, STEPS_PER_EPOCH)
    assert multi.params["milestones"] == [50, 120]
    assert torch.equal(multi.lr, S.multistep_lr(200, 1.0, [50, 120], 0.5).lr)
    knots_spec = spec_of("--schedule piecewise_linear --knots 0:0,0.5ep:0.4,20ep:0")
    assert knots_spec.knots == ((0.0, 0.0), ("0.5ep", 0.4), ("20ep", 0.0)) and not knots_spec.knots_as_fraction
    knots = knots_spec.build(TOTAL_STEPS, STEPS_PER_EPOCH)
    assert knots.params["knots"] == [[0.0, 0.0], [5.0, 0.4], [200.0, 0.0]]
    assert float(knots.lr[5]) == pytest.approx(0.4)


def test_cyclic_and_one_cycle_flags() -> None:
    cyc = from_cli("--schedule cyclic_lr --base-lr 0.01 --max-lr 0.1 --step-size-up 0.25ep --mode triangular2 "
                   "--no-cycle-momentum")
    assert cyc.momentum is None and cyc.params["step_size_up"] == 2.5 and cyc.params["mode"] == "triangular2"
    one = from_cli("--schedule one_cycle_lr --max-lr 0.4 --pct-start 0.25 --anneal-strategy linear --three-phase "
                   "--div-factor 10 --final-div-factor 100 --base-momentum 0.8 --max-momentum 0.9")
    assert torch.equal(one.lr, S.one_cycle_lr(200, 0.4, 0.25, "linear", True, 0.8, 0.9, 10, 100, True).lr)
    assert one.momentum is not None       # one_cycle_lr cycles momentum unless told not to


def test_warmup_is_taken_out_of_the_run() -> None:
    schedule = from_cli("--schedule cosine_annealing_lr --base-lr 0.2 --warmup 3ep --warmup-mode linear "
                        "--warmup-start-factor 0")
    assert len(schedule) == 200 and float(schedule.lr[0]) == 0.0
    assert torch.equal(schedule.lr[30:], S.cosine_annealing_lr(170, 0.2).lr)
    assert schedule.params["warmup"] == {"steps": 30, "mode": "linear", "start_factor": 0.0}
    epochwise = from_cli("--schedule cosine_annealing_lr --base-lr 0.2 --warmup 2 --interval epoch")
    assert len(epochwise) == 200 and epochwise.params["warmup"]["steps"] == 20


def test_without_schedule_the_recipes_schedule_is_kept_and_max_lr_and_warmup_change_it() -> None:
    one_cycle = CLASSIC.replace(schedule=ScheduleSpec("one_cycle_lr", max_lr=0.6, pct_start=0.25))
    overridden = spec_of("--max-lr 0.9", one_cycle)
    assert overridden == dataclasses.replace(one_cycle.schedule, max_lr=0.9)
    warmed = spec_of("--warmup 2ep --warmup-start-factor 0", CLASSIC)
    assert warmed == dataclasses.replace(CLASSIC.schedule, warmup="2ep", warmup_start_factor=0.0)
    built = warmed.build(TOTAL_STEPS, STEPS_PER_EPOCH)
    assert len(built) == 200 and float(built.lr[0]) == 0.0
    # The recipe's knots are fractions of the run: after the warm-up they span the remaining 180 steps.
    assert torch.equal(built.lr[20:], CLASSIC.schedule.build(180, STEPS_PER_EPOCH).lr)
    with pytest.raises(SpeedrunError, match=r"--step-size.*--schedule NAME"):
        spec_of("--step-size 3", CLASSIC)


def on_the_command_line(line: str) -> None:
    settings_from_flags([*RUN_OF_200_STEPS, *line.split()], resolve_auto=False)


@pytest.mark.parametrize("line, message", [
    ("--schedule step_lr --base-lr 0.1 --step-size 5 --T-0 3", "--T-0 is not a parameter of schedule 'step_lr'"),
    ("--schedule one_cycle_lr --max-lr 0.1 --base-lr 0.01", "--base-lr is not a parameter of schedule"),
    ("--schedule step_lr --base-lr 0.1 --step-size 1.25ep", "--step-size 1.25ep is 12.5 steps; it must be a whole "
                                                            "number of steps"),
    ("--schedule step_lr --base-lr 0.1 --step-size 2.5 --interval epoch", "--step-size 2.5 is 2.5 epochs"),
    ("--schedule step_lr --base-lr 0.1 --step-size five", "--step-size"),
    ("--schedule step_lr --base-lr 0.1 --step-size 0", "--step-size"),
    ("--schedule multistep_lr --base-lr 0.1 --milestones 3,x", "--milestones"),
    ("--schedule multistep_lr --base-lr 0.1 --milestones 5ep,30ep", "--milestones 300 lie(s) past the run's end"),
    ("--schedule piecewise_linear --knots 0-0.1", "--knots"),
    ("--schedule step_lr --base-lr 0.1 --step-size 5 --warmup 20ep", "--warmup 20ep is 200 steps"),
    ("--schedule nope", "--schedule: must be one of .*cyclic_lr"),
    ("--schedule step_lr --base-lr 0.1", "--step-size is needed by schedule 'step_lr'"),
    ("--schedule lambda_lr", "lr_lambda is a Python function, which no command line can give: schedule "
                             "'lambda_lr' is for the library's API"),
    ("--schedule cyclic_lr --base-lr 0.5 --max-lr 0.1", "--max-lr (0.1) must be >= --base-lr (0.5)"),
    ("--schedule cosine_annealing_lr --base-lr 0.1 --mode triangular", "--mode"),
    ("--schedule cosine_annealing_lr --base-lr inf", "--base-lr"),
    ("--schedule cosine_annealing_warm_restarts --base-lr 0.1 --T-0 5 --T-mult 0", "--T-mult"),
])
def test_errors_name_the_flag(line: str, message: str) -> None:
    pattern = message if ".*" in message else re.escape(message)
    with pytest.raises(SpeedrunError, match=pattern):
        on_the_command_line(line)


def test_library_errors_name_the_field() -> None:
    with pytest.raises(SettingError, match=r"^T_0 is not a parameter") as error:
        ScheduleSpec("step_lr", base_lr=0.1, step_size=3, T_0=3).build(TOTAL_STEPS, STEPS_PER_EPOCH)
    assert isinstance(error.value, ValueError) and error.value.setting == "T_0"
    with pytest.raises(SettingError, match=r"^base_lr ") as error:
        ScheduleSpec("step_lr", base_lr=-0.1, step_size=3)
    assert error.value.setting == "base_lr"
    with pytest.raises(SettingError, match=r"^knots "):
        ScheduleSpec("piecewise_linear", knots_as_fraction=True)
    with pytest.raises(ValueError, match="nope"):
        ScheduleSpec("nope")


@pytest.mark.parametrize("name, params", [
    ("step_size", dict(name="step_lr", base_lr=0.1)),
    ("T_max", dict(name="cosine_annealing_lr", base_lr=0.1)),
    ("T_0", dict(name="cosine_annealing_warm_restarts", base_lr=0.1)),
    ("total_iters", dict(name="linear_lr", base_lr=0.1)),
    ("milestones", dict(name="multistep_lr", base_lr=0.1)),
    ("warmup", dict(name="cosine_annealing_lr", base_lr=0.1)),
])
def test_whole_durations_are_refused_when_fractional(name: str, params: dict) -> None:
    assert name in WHOLE_DURATIONS

    def build(value: str) -> S.Schedule:
        given = (value,) if name == "milestones" else value
        return ScheduleSpec(**params, **{name: given}).build(TOTAL_STEPS, STEPS_PER_EPOCH)

    build("1.5ep")                                    # 15 steps: whole
    build("15")
    with pytest.raises(SettingError, match=rf"^{name} 1.25ep is 12.5 steps; it must be a whole number of steps"):
        build("1.25ep")
    with pytest.raises(SettingError, match=rf"^{name} 12.5 is 12.5 steps"):
        build("12.5")


def test_fractional_durations_stay_fractional_where_pytorch_allows() -> None:
    cyc = ScheduleSpec("cyclic_lr", base_lr=0.01, max_lr=0.1, step_size_up="2.5ep", step_size_down=7.5)
    built = cyc.build(TOTAL_STEPS, STEPS_PER_EPOCH)
    assert (built.params["step_size_up"], built.params["step_size_down"]) == (25.0, 7.5)
    per_epoch = dataclasses.replace(cyc, interval="epoch").build(TOTAL_STEPS, STEPS_PER_EPOCH)
    assert per_epoch.params["step_size_up"] == 2.5


def test_a_fraction_of_an_epoch_that_is_whole_steps_is_a_whole_duration() -> None:
    # Half an epoch of 10 steps is 5 steps, as whole as "5"; the bound of 1 is on the duration, not on N of "Nep".
    spec = spec_of("--schedule cosine_annealing_warm_restarts --base-lr 0.1 --T-0 0.5ep")
    assert torch.equal(spec.build(TOTAL_STEPS, STEPS_PER_EPOCH).lr, S.cosine_annealing_warm_restarts(200, 0.1, 5).lr)


def test_a_bad_duration_says_its_unit_by_the_interval_flag() -> None:
    with pytest.raises(SpeedrunError, match="--step-size") as error:
        on_the_command_line("--schedule step_lr --base-lr 0.1 --step-size five")
    assert "in units of --interval" in str(error.value)


def test_parse_duration() -> None:
    decl = dict((f.name, d) for f, d in settings_of(ScheduleSpec))

    def steps(text: str, interval: str = "step") -> float:
        value = parse("step_size_up", decl["step_size_up"], text)
        spec = ScheduleSpec("cyclic_lr", base_lr=0.01, max_lr=0.1, step_size_up=value, interval=interval)
        return spec.build(TOTAL_STEPS, STEPS_PER_EPOCH).params["step_size_up"]

    assert parse("T_0", decl["T_0"], "12") == 12.0
    assert parse("T_0", decl["T_0"], "2.5ep") == "2.5ep"
    assert (steps("12"), steps("2.5ep"), steps(" 3 EP ")) == (12.0, 25.0, 30.0)
    assert (steps("2.5ep", "epoch"), steps("3", "epoch")) == (2.5, 3.0)
    for bad in ("", "ep", "-3", "3eps", "1,2", "nan", "1e10"):
        with pytest.raises(ValueError):
            parse("step_size_up", decl["step_size_up"], bad)
    zero = parse("T_0", decl["T_0"], "0")      # a length of no steps reads, and the policy refuses it when built
    with pytest.raises(SettingError, match="T_0 must be an integer >= 1"):
        ScheduleSpec("cosine_annealing_warm_restarts", base_lr=0.1, T_0=zero).build(TOTAL_STEPS, STEPS_PER_EPOCH)


def test_params_are_the_policy_parameters_given() -> None:
    spec = ScheduleSpec("one_cycle_lr", max_lr=0.4, pct_start=0.25, warmup="1ep", interval="step")
    assert spec.params == {"max_lr": 0.4, "pct_start": 0.25}
    assert CLASSIC.schedule.params == {"knots": ((0.0, 0.0), (5 / 24, 0.4), (1.0, 0.0))}


def test_to_dict_round_trips_through_json_and_old_layouts_still_read() -> None:
    specs = [CLASSIC.schedule,
             ScheduleSpec("multistep_lr", base_lr=0.1, milestones=("5ep", 12.0), gamma=0.5, warmup="1ep"),
             ScheduleSpec("cyclic_lr", base_lr=0.01, max_lr=0.1, cycle_momentum=False, interval="epoch")]
    for spec in specs:
        assert ScheduleSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert "base_lr" not in CLASSIC.schedule.to_dict()          # None: left out
    old_params = ScheduleSpec.from_dict({"name": "one_cycle_lr", "params": {"max_lr": 0.1, "pct_start": 0.3}})
    old_flags = ScheduleSpec.from_dict({"name": "one_cycle_lr", "flags": {"max_lr": 0.1, "pct_start": 0.3}})
    assert old_params == old_flags == ScheduleSpec("one_cycle_lr", max_lr=0.1, pct_start=0.3)
    with pytest.raises(SettingError, match="T0"):
        ScheduleSpec.from_dict({"name": "one_cycle_lr", "max_lr": 0.1, "T0": 3})
