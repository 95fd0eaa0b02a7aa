"""A sweep folder's variants by name: ``compare DIR A B`` and ``leaderboard DIR --variants``, with
a name that matches nothing (or, for compare, several records) refused in one line."""
from __future__ import annotations

import json

import pytest

from speedrun.cli import main
from tests.support.records import variant


@pytest.fixture
def sweep_folder(cpu_records, tmp_path):
    """Three variant records as a sweep writes them: step at two grid cells, and one-cycle."""
    base = cpu_records.load("narrow")
    for label, name, grid in (("step@cutout=0", "step", {"cutout": 0}), ("step@cutout=4", "step", {"cutout": 4}),
                              ("one-cycle@cutout=0", "one-cycle", {"cutout": 0})):
        variant(base, tmp_path / f"{label}.json", sweep={"name": "s", "arm": label, "variant": name, "grid": grid})
    return tmp_path


def test_the_leaderboard_names_each_variant_and_grid_cell(sweep_folder, capsys):
    assert main(["leaderboard", str(sweep_folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["#", "variant", "grid", "recipe"]
    assert sorted(tuple(line.split()[1:3]) for line in lines[3:]) == [
        ("one-cycle", "cutout=0"), ("step", "cutout=0"), ("step", "cutout=4")]


@pytest.mark.parametrize("names, rows", [("step", 2), ("one-cycle", 1), ("step@cutout=4,one-cycle", 2)])
def test_the_leaderboard_keeps_the_variants_named(sweep_folder, capsys, names, rows):
    assert main(["leaderboard", str(sweep_folder), "--variants", names, "--format", "json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert sum(len(g["ranked"]) + len(g["unranked"]) for g in groups) == rows


def test_compare_takes_a_sweep_folder_and_two_variant_names(sweep_folder, capsys):
    assert main(["compare", str(sweep_folder), "step@cutout=0", "one-cycle"]) == 0
    out = capsys.readouterr().out
    assert "step@cutout=0.json" in out and "one-cycle@cutout=0.json" in out


@pytest.mark.parametrize("argv, says", [
    (["compare", "{dir}", "step", "one-cycle"], "compare step: matches several records; name one (in {dir}: "
                                                  "one-cycle@cutout=0, step@cutout=0, step@cutout=4)"),
    (["compare", "{dir}", "nope", "one-cycle"], "compare nope: is not a variant there"),
    (["compare", "{dir}", "{dir}"], "a folder needs two variant names"),
    (["leaderboard", "{dir}", "--variants", "nope"], "--variants nope: is not a variant there"),
])
def test_a_name_that_picks_nothing_or_too_much_is_one_line_exit_2(sweep_folder, capsys, argv, says):
    code = main([a.format(dir=sweep_folder) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and says.format(dir=sweep_folder) in err and err.count("\n") == 1, err
