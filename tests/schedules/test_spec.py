"""The schedule command-line surface: flags, epoch durations, and errors that name the flag."""
from __future__ import annotations

import argparse

import pytest
import torch

from speedrun import schedules as S
from speedrun.cli import schedule_flags as A


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    A.add_schedule_arguments(p)
    return p


def from_cli(line: str, total_steps: int = 200, steps_per_epoch: int = 10, **kwargs) -> S.Schedule:
    return A.schedule_from_args(parser().parse_args(line.split()), total_steps=total_steps,
                                steps_per_epoch=steps_per_epoch, **kwargs)


def test_cli_flags_cover_every_policy_parameter() -> None:
    options = {opt for action in parser()._actions for opt in action.option_strings}
    for name in S.SCHEDULES:
        for param in S.policy_parameters(name):
            if param not in ("lr_lambda", "scale_fn", "scale_mode"):
                assert "--" + param.replace("_", "-") in options, (name, param)
    listed = ["--schedule", "--base-lr", "--max-lr", "--mode", "--gamma", "--step-size", "--milestones", "--T-0",
              "--T-mult", "--eta-min", "--pct-start", "--anneal-strategy", "--div-factor", "--final-div-factor",
              "--three-phase", "--cycle-momentum", "--no-cycle-momentum", "--base-momentum", "--max-momentum",
              "--step-size-up", "--step-size-down", "--knots", "--warmup", "--warmup-mode", "--interval"]
    assert set(listed) <= options and "--lr" not in options


def test_cli_defaults_are_none_and_every_parameter_names_its_flag() -> None:
    args = vars(parser().parse_args([]))
    names = args.pop("setting_flags")     # how a SettingError from a policy is said: by its flag
    assert all(value is None for value in args.values())
    assert names["max_lr"] == "--max-lr" and names["T_0"] == "--T-0"


def test_cli_epoch_suffix_converts_to_steps() -> None:
    schedule = from_cli("--schedule cosine_annealing_warm_restarts --base-lr 0.1 --T-0 2ep --T-mult 2")
    assert schedule.params["T_0"] == 20
    assert torch.equal(schedule.lr, S.cosine_annealing_warm_restarts(200, 0.1, 20, 2).lr)


def test_cli_plain_numbers_are_in_interval_units() -> None:
    per_step = from_cli("--schedule step_lr --base-lr 0.1 --step-size 3")
    assert per_step.params["step_size"] == 3 and per_step.interval == "step"
    per_epoch = from_cli("--schedule step_lr --base-lr 0.1 --step-size 3 --interval epoch")
    assert torch.equal(per_epoch.lr, S.step_lr(200, 0.1, 3, interval="epoch", steps_per_epoch=10).lr)
    in_epochs = from_cli("--schedule step_lr --base-lr 0.1 --step-size 3ep --interval epoch")
    assert torch.equal(in_epochs.lr, per_epoch.lr)


def test_cli_milestones_and_knots() -> None:
    multi = from_cli("--schedule multistep_lr --base-lr 1 --milestones 5ep,120 --gamma 0.5")
    assert multi.params["milestones"] == [50, 120]
    knots = from_cli("--schedule piecewise_linear --knots 0:0,0.5ep:0.4,20ep:0")
    assert knots.params["knots"] == [[0.0, 0.0], [5.0, 0.4], [200.0, 0.0]]
    assert float(knots.lr[5]) == pytest.approx(0.4)


def test_cli_cyclic_and_one_cycle_flags() -> None:
    cyc = from_cli("--schedule cyclic_lr --base-lr 0.01 --max-lr 0.1 --step-size-up 0.25ep --mode triangular2 "
                   "--no-cycle-momentum")
    assert cyc.momentum is None and cyc.params["step_size_up"] == 2.5
    one = from_cli("--schedule one_cycle_lr --max-lr 0.4 --pct-start 0.25 --anneal-strategy linear --three-phase "
                   "--div-factor 10 --final-div-factor 100 --base-momentum 0.8 --max-momentum 0.9")
    assert torch.equal(one.lr, S.one_cycle_lr(200, 0.4, 0.25, "linear", True, 0.8, 0.9, 10, 100, True).lr)


def test_cli_warmup_is_taken_out_of_the_run() -> None:
    schedule = from_cli("--schedule cosine_annealing_lr --base-lr 0.2 --warmup 3ep --warmup-mode linear "
                        "--warmup-start-factor 0")
    assert len(schedule) == 200 and float(schedule.lr[0]) == 0.0
    assert torch.equal(schedule.lr[30:], S.cosine_annealing_lr(170, 0.2).lr)
    epochwise = from_cli("--schedule cosine_annealing_lr --base-lr 0.2 --warmup 2 --interval epoch")
    assert len(epochwise) == 200 and epochwise.params["warmup"]["steps"] == 20


def test_cli_defaults_fill_in_and_are_filtered_by_policy() -> None:
    defaults = {"base_lr": 0.3, "max_lr": 0.6, "T_0": "2ep"}
    chosen = from_cli("--schedule cosine_annealing_warm_restarts", default_params=defaults)
    assert chosen.params["base_lr"] == 0.3 and chosen.params["T_0"] == 20
    default = from_cli("", default_params=defaults)
    assert default.name == "one_cycle_lr" and default.params["max_lr"] == 0.6
    overridden = from_cli("--max-lr 0.9", default_name="one_cycle_lr", default_params=defaults)
    assert overridden.params["max_lr"] == 0.9


@pytest.mark.parametrize("line, flag", [
    ("--schedule step_lr --base-lr 0.1 --step-size 5 --T-0 3", "--T-0"),
    ("--schedule one_cycle_lr --max-lr 0.1 --base-lr 0.01", "--base-lr"),
    ("--schedule step_lr --base-lr 0.1 --step-size 0.25ep", "--step-size"),
    ("--schedule step_lr --base-lr 0.1 --step-size five", "--step-size"),
    ("--schedule multistep_lr --base-lr 0.1 --milestones 3,x", "--milestones"),
    ("--schedule piecewise_linear --knots 0-0.1", "--knots"),
    ("--schedule step_lr --base-lr 0.1 --step-size 5 --warmup 20ep", "--warmup"),
    ("--schedule nope", "cyclic_lr"),
    ("--schedule step_lr --base-lr 0.1", "step_size"),
])
def test_cli_errors_name_the_flag(line: str, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        from_cli(line)


def test_cli_unknown_default_param_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="T0"):
        from_cli("", default_params={"max_lr": 0.1, "T0": 3})


def test_parse_duration() -> None:
    assert A.parse_duration("12") == A.Duration(12.0, False)
    assert A.parse_duration("2.5ep") == A.Duration(2.5, True)
    assert A.parse_duration(" 3 EP ") == A.Duration(3.0, True)
    assert A.Duration(2.5, True).to_units("step", 10) == 25.0
    assert A.Duration(2.5, True).to_units("epoch", 10) == 2.5
    for bad in ("", "ep", "-3", "3eps", "1,2"):
        with pytest.raises(ValueError):
            A.parse_duration(bad)
