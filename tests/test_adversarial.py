"""Property-based: whatever value any declared setting of any command gets, and whatever JSON a
reader is handed, the answer is exit 0 or 2, no traceback, a refusal in one line naming the flag
or the file, no work before a refusal (the data does not exist, so work would be refused later,
naming the data), and no file that was there changed."""
from __future__ import annotations

import json
import math
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speedrun.cli import COMMANDS, build_parser, main
from tests.results.test_records import minimal_record

NO_DATA = ["--data-dir", "/nonexistent/cifar10", "--no-download", "--device", "cpu"]
# Each command's words before the flag under test: positionals, and data that is not there.
PREFIX = {"train": NO_DATA, "lr-find": NO_DATA, "profile": NO_DATA, "anchor": ["airbench94", *NO_DATA],
          "compare": ["a.json", "b.json"], "export": ["r.json"], "plot": ["r.json"], "sweep": ["spec.toml"],
          "schedule": [], "leaderboard": ["r.json"]}
SKIPPED = {"flops"}        # a valid value makes it count every recipe's FLOPs: seconds a draw, tested elsewhere


def declared_flags() -> list[tuple[str, str]]:
    out = []
    for command in COMMANDS:
        if command.name in SKIPPED:
            continue
        parser = build_parser(command.name)
        sub = next(a for a in parser._actions if a.dest == "command").choices[command.name]
        out += [(command.name, a.option_strings[0]) for a in sub._actions if getattr(a.type, "setting", None)]
    return out


FLAGS = declared_flags()
TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.text(max_size=12),
    st.sampled_from(["", " ", "auto", "1ep", "0.5ep", "-1ep", "0:0,1ep:0.1", "1,2,3", "8,16,0", "nan", "inf",
                     "-0", "1e999", "1e-320", "cos", "step", "cpu", "x" * 300]),
)


def _tree(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(FLAGS), value=TEXT)
def test_any_value_of_any_setting(case, value, monkeypatch, capsys):
    command, flag = case
    with tempfile.TemporaryDirectory() as scratch:       # a fresh folder for every drawn example
        monkeypatch.chdir(scratch)
        Path("r.json").write_text(json.dumps(minimal_record()))
        before = _tree(Path(scratch))
        code = main([command, *PREFIX[command], f"{flag}={value}"])
        after = _tree(Path(scratch))
        monkeypatch.undo()
    err = capsys.readouterr().err
    assert code in (0, 2), (command, flag, value, err)
    assert "Traceback" not in err
    if code == 2:
        errors = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
        assert len(errors) == 1 and errors[0].startswith("speedrun: error:"), err
        assert flag in errors[0] or any(p in errors[0].lower() for p in ("--", "nonexistent", "json", "toml", "cuda")), err
    assert {p: after.get(p) for p in before} == before, "no file that was there is changed"


# -- readers ---------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**400, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _set(value: object, path: tuple, new: object) -> object:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return copy


def _record_with_epochs() -> dict:
    record = minimal_record(schedule={"name": "x", "lr": [0.1, 0.2], "momentum": None, "interval": "step", "steps": 2},
                            nvml={"available": False, "reason": "cpu", "missing": {}})
    record["runs"][0].update(final_test_acc=0.5, time_to_target_s=None, train_time_s=1.0, nvml={})
    record["runs"][0]["epochs"][0].update(test_acc=0.5, lr=0.1, train_acc=0.4)
    return record


READERS = [["leaderboard", "R"], ["compare", "R", "R"], ["export", "R"], ["export", "R", "--format", "dawnbench"],
           ["plot", "R"]]


def _read_with_every_reader(text: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "in" / "r.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    for words in READERS:
        out = tmp_path / f"out-{random.random()}"
        flag = "--out-dir" if words[0] == "plot" else "--out"
        argv = [str(path) if w == "R" else w for w in words]
        if words[0] != "compare":
            argv += [flag, str(out) + (".txt" if words[0] == "leaderboard" else "")]
        code = main(argv)
        err = capsys.readouterr().err
        assert code in (0, 2), (words, err)
        assert "Traceback" not in err, (words, err)
        if code == 2:
            assert "r.json" in err or "record" in err or "dawnbench" in err.lower() or "matplotlib" in err, (words, err)
        assert path.read_text() == text, "the record read is never changed"


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON_VALUES, where=st.integers(min_value=0, max_value=10**6))
def test_any_json_in_a_record_field(value, where, tmp_path, capsys):
    record = _record_with_epochs()
    paths = _paths(record)
    mutated = _set(record, paths[where % len(paths)], value)
    _read_with_every_reader(json.dumps(mutated, allow_nan=True), tmp_path, capsys)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON_VALUES)
def test_any_json_document(value, tmp_path, capsys):
    _read_with_every_reader(json.dumps(value, allow_nan=True), tmp_path, capsys)


@pytest.mark.parametrize("text", ["[" * 200_000, '{"schema": 1e999}', "\x00\xff", "", "{" + '"a":1,' * 10 + "}",
                                  json.dumps(minimal_record(target=math.nextafter(0, 1)))])
def test_hostile_record_files(text, tmp_path, capsys):
    _read_with_every_reader(text, tmp_path, capsys)
