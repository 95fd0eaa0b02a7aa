"""Every numeric flag of every command refuses what no setting can hold, in one line naming it.

The flags come from the settings' declarations, so this walks each command's parser and tries
every flag that reads a number with values past any bound, before any work starts (the refusal
happens while the command line is read)."""
from __future__ import annotations

import pytest

from speedrun.cli import COMMANDS, build_parser, main

NUMERIC_KINDS = ("int", "float", "ints", "floats", "duration", "durations", "knots")
BAD_VALUES = ("1e999", "-1e999", "1e300", str(10**20), "nan", "")
POSITIONALS = {"anchor": ["airbench94"], "compare": ["a.json", "b.json"], "export": ["r.json"], "plot": ["r.json"],
               "sweep": ["spec.toml"]}


def numeric_flags(command: str) -> list[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    flags = []
    for action in sub._actions:
        declared = getattr(action.type, "setting", None)
        if declared is not None and declared.kind in NUMERIC_KINDS:
            flags.append(action.option_strings[0])
    return flags


CASES = [(c.name, flag) for c in COMMANDS for flag in numeric_flags(c.name)]


def test_the_commands_that_take_numbers_have_their_flags():
    by_command = {c: {f for cc, f in CASES if cc == c} for c, _ in CASES}
    assert {"--epochs", "--cutout", "--step-size", "--width", "--newton-schulz-steps", "--milestones",
            "--knots", "--seed", "--plateau-factor", "--swa-epochs"} <= by_command["train"]
    assert {"--num-steps", "--start-lr"} <= by_command["lr-find"]
    assert {"--rows"} <= by_command["profile"]
    assert {"--target"} <= by_command["leaderboard"]
    assert {"--steps-per-epoch", "--T-0"} <= by_command["schedule"]
    assert {"--progress-every", "--retries"} <= by_command["sweep"]


@pytest.mark.parametrize(("command", "flag"), CASES, ids=[f"{c}{f}" for c, f in CASES])
def test_a_number_past_every_bound_is_one_line_naming_the_flag(command, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for value in BAD_VALUES:
        code = main([command, *POSITIONALS.get(command, []), f"{flag}={value}"])
        err = capsys.readouterr().err
        assert code == 2, (value, err)
        assert len(err.strip().splitlines()) == 1 and flag in err, (value, err)
    assert list(tmp_path.iterdir()) == [], "nothing is written"


def text_flags(command: str) -> list[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return [a.option_strings[0] for a in sub._actions
            if getattr(a.type, "setting", None) is not None and a.type.setting.kind == "str"]


TEXT_CASES = [(c.name, flag) for c in COMMANDS for flag in text_flags(c.name)]


@pytest.mark.parametrize(("command", "flag"), TEXT_CASES, ids=[f"{c}{f}" for c, f in TEXT_CASES])
def test_an_empty_text_setting_is_one_line_naming_the_flag(command, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for value in ("", "  "):
        code = main([command, *POSITIONALS.get(command, []), f"{flag}={value}"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and flag in err, (value, err)
    assert list(tmp_path.iterdir()) == []


def test_every_command_has_its_text_flags_checked():
    assert {("train", "--device"), ("train", "--out"), ("lr-find", "--out"), ("leaderboard", "--out"),
            ("profile", "--trace"), ("sweep", "--address"), ("schedule", "--plot")} <= set(TEXT_CASES)
