"""Leaderboard: reading folders of records, ranking per GPU model, and the four renderings.

Happy-path records are real CPU runs from the harness (see ``records_fixture``). Where a test
needs a second GPU it copies a real record and changes only ``environment.gpu_name`` and
``environment.device``: that simulates the same runs on another GPU, which is all the grouping
logic looks at. Malformed files are written by hand, as malformed files are.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest

from speedrun.cli import command
from speedrun.cli import leaderboard as leaderboard_cmd
from speedrun.errors import RecordError, SpeedrunError
from speedrun.results.leaderboard import CSV_FIELDS, build_leaderboard, load_records
from speedrun.results.render import (
    render,
    render_csv,
    render_json,
    render_markdown,
    render_table,
)
from speedrun.results.stats import summarize
from tests.support.records import TARGET, UNREACHABLE, dump, variant, write_text


def _copy(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, folder / src.name))


def _group(groups, gpu: str, target: float):
    matches = [g for g in groups if g.gpu == gpu and math.isclose(g.target, target)]
    assert len(matches) == 1, [(g.gpu, g.target) for g in groups]
    return matches[0]


# --- ranking on real records -----------------------------------------------------------------


def test_ranks_by_mean_time_to_target_among_entries_meeting_the_target(cpu_records):
    records, problems = load_records([cpu_records.folder])
    assert problems == []
    group = _group(build_leaderboard(records), "CPU", TARGET)
    assert [e.rank for e in group.ranked] == list(range(1, len(group.ranked) + 1))
    means = [e.time_to_target.mean for e in group.ranked]
    assert means == sorted(means)
    assert {e.recipe for e in group.ranked} <= {"tiny-narrow", "tiny-wide"}
    for entry in group.ranked:
        assert entry.accuracy.mean >= TARGET and entry.reached >= 1 and entry.note == ""


def test_entry_numbers_are_recomputed_from_the_runs_raw_values(cpu_records):
    record = cpu_records.load("narrow")
    records, _ = load_records([cpu_records.narrow])
    [group] = build_leaderboard(records)
    [entry] = group.entries
    accs = [r["final_test_acc"] for r in record["runs"]]
    times = [r["time_to_target_s"] for r in record["runs"] if r["reached_target"]]
    assert entry.runs == len(record["runs"])
    assert entry.accuracy == summarize(accs)
    assert entry.time_to_target == summarize(times)
    assert entry.reached == len(times)
    assert entry.reached_share == pytest.approx(len(times) / len(record["runs"]))
    assert entry.date == record["created"][:10]
    assert entry.dataset == record["dataset"]["name"]
    assert entry.gpu == "CPU"
    commit = record["environment"].get("git_commit")
    if commit:
        assert entry.commit.startswith(commit[:7])


def test_an_entry_below_the_target_is_listed_unranked_with_the_reason(cpu_records):
    records, _ = load_records([cpu_records.folder])
    group = _group(build_leaderboard(records), "CPU", UNREACHABLE)
    assert group.ranked == ()
    [entry] = group.unranked
    assert entry.rank is None
    assert "below the target" in entry.note and "99.90%" in entry.note


def test_times_on_different_gpus_are_never_ranked_against_each_other(cpu_records, tmp_path):
    # Simulated second GPU: the real narrow record with only the GPU fields changed.
    _copy(cpu_records.narrow, tmp_path)
    _copy(cpu_records.wide, tmp_path)
    variant(cpu_records.load("narrow"), tmp_path / "other-gpu.json",
            environment__device="cuda", environment__gpu_name="Simulated GPU B")
    records, _ = load_records([tmp_path])
    groups = build_leaderboard(records)
    assert {g.gpu for g in groups} == {"CPU", "Simulated GPU B"}
    other = _group(groups, "Simulated GPU B", TARGET)
    assert [(e.rank, e.recipe) for e in other.entries] == [(1, "tiny-narrow")]
    cpu = _group(groups, "CPU", TARGET)
    assert all(e.gpu == "CPU" for e in cpu.entries) and len(cpu.entries) == 2


def test_runs_on_different_dataset_copies_are_never_ranked_against_each_other(cpu_records, tmp_path):
    # The same real runs, as if made on another copy: only dataset.name changed.
    _copy(cpu_records.narrow, tmp_path)
    variant(cpu_records.load("narrow"), tmp_path / "other-copy.json", dataset__name="Another copy")
    records, _ = load_records([tmp_path])
    groups = build_leaderboard(records)
    assert sorted(g.dataset for g in groups) == ["Another copy", "synthetic"]
    assert all(len(g.entries) == 1 and g.entries[0].rank == 1 for g in groups)
    assert all(g.dataset in g.title for g in groups)


def test_a_common_target_reevaluates_every_run_from_its_epoch_curve(cpu_records):
    records, _ = load_records([cpu_records.narrow, cpu_records.unreachable])
    low = 0.2
    groups = build_leaderboard(records, target=low)
    assert [(g.gpu, g.target) for g in groups] == [("CPU", low)]
    for entry in groups[0].entries:
        record = next(r for r in records if r["source_file"] == entry.source)
        expected = []
        for run in record["runs"]:
            hits = [e["elapsed_s"] for e in run["epochs"] if e.get("test_acc") is not None and e["test_acc"] >= low]
            if hits:
                expected.append(hits[0])
        assert entry.time_to_target == summarize(expected)


def test_the_records_own_target_gives_the_harness_time_to_target(cpu_records):
    records, _ = load_records([cpu_records.narrow])
    record = records[0]
    [own] = build_leaderboard(records)
    [same] = build_leaderboard(records, target=record["target"])
    assert own.entries[0].time_to_target == same.entries[0].time_to_target
    assert own.entries[0].time_to_target.mean == pytest.approx(record["summary"]["time_to_target"]["mean"])


def test_an_anchor_record_contributes_one_entry_per_side(cpu_records, tmp_path):
    # An anchor record built from two real records' runs, in the documented 'sides' layout.
    narrow, wide = cpu_records.load("narrow"), cpu_records.load("wide")
    sides = [{"label": "ours", "runs": narrow["runs"], "summary": narrow["summary"]},
             {"label": "reference", "runs": wide["runs"], "summary": wide["summary"]}]
    variant(narrow, tmp_path / "anchor.json", kind="anchor", recipe="anchor-check", runs=[], sides=sides)
    records, problems = load_records([tmp_path])
    assert problems == []
    [group] = build_leaderboard(records)
    assert sorted(e.recipe for e in group.entries) == ["anchor-check [ours]", "anchor-check [reference]"]
    by_label = {e.recipe: e for e in group.entries}
    assert by_label["anchor-check [reference]"].accuracy == summarize([r["final_test_acc"] for r in wide["runs"]])


def test_an_lr_find_record_is_left_out_with_a_note(cpu_records, tmp_path):
    _copy(cpu_records.narrow, tmp_path)
    variant(cpu_records.load("narrow"), tmp_path / "lrfind.json", kind="lr_find")
    records, problems = load_records([tmp_path])
    assert [r["kind"] for r in records] == ["train"]
    assert len(problems) == 1 and "lrfind.json" in problems[0] and "lr_find" in problems[0]


def test_a_failed_run_keeps_an_entry_off_the_ranking(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    runs = [dict(r) for r in record["runs"]]
    runs[0].update(status="failed", error="out of memory", final_test_acc=None, reached_target=False, time_to_target_s=None)
    variant(record, tmp_path / "failed.json", runs=runs)
    records, _ = load_records([tmp_path])
    [group] = build_leaderboard(records)
    [entry] = group.unranked
    assert entry.note == f"1 of {len(runs)} runs diverged or failed"


def test_a_bad_target_names_the_valid_range(cpu_records):
    records, _ = load_records([cpu_records.narrow])
    with pytest.raises(SpeedrunError, match=r"--target must be an accuracy in \(0, 1\]"):
        build_leaderboard(records, target=94)


# --- bad files -------------------------------------------------------------------------------

_BAD_FILES = {
    "truncated": lambda good: good[: len(good) // 2],
    "not-json": lambda good: "this is not json\n",
    "newer-schema": lambda good: json.dumps({**json.loads(good), "schema_version": 99}),
    "non-finite": lambda good: good.replace('"target": ', '"target": NaN, "x": ', 1),
    "partial": lambda good: json.dumps({k: v for k, v in json.loads(good).items() if k != "runs"}),
    "bad-accuracy-type": lambda good: json.dumps(
        {**json.loads(good), "runs": [{**r, "final_test_acc": "high"} for r in json.loads(good)["runs"]]}),
    "not-a-record": lambda good: json.dumps({"hello": "world"}),
    "anchor-bad-sides": lambda good: json.dumps({**json.loads(good), "kind": "anchor", "sides": [{"label": 3}]}),
}
_EXPECTED = {
    "truncated": "was it cut short",
    "not-json": "not a valid JSON record",
    "newer-schema": "newer than this speedrun understands",
    "non-finite": "non-finite number",
    "partial": "missing field 'runs'",
    "bad-accuracy-type": "final_test_acc' must be a number from 0 to 1 or null",
    "not-a-record": "not a speedrun record",
    "anchor-bad-sides": "sides[0]: field 'label' must be str, got 3",
}


@pytest.mark.parametrize("kind", sorted(_BAD_FILES))
def test_a_bad_file_is_named_and_skipped_without_losing_the_good_ones(cpu_records, tmp_path, kind):
    good = _copy(cpu_records.narrow, tmp_path)
    bad = write_text(tmp_path / f"{kind}.json", _BAD_FILES[kind](good.read_text()))
    records, problems = load_records([tmp_path])
    assert [r["source_file"] for r in records] == [str(good)]
    assert len(problems) == 1
    assert str(bad) in problems[0] and _EXPECTED[kind] in problems[0]
    assert "\n" not in problems[0]
    assert build_leaderboard(records)[0].entries[0].source == str(good)


def test_an_empty_folder_is_an_error_naming_the_fix(tmp_path):
    with pytest.raises(RecordError, match=r"no \*\.json records found in .*; run 'speedrun train' first"):
        load_records([tmp_path])


def test_no_paths_at_all_is_an_error():
    with pytest.raises(RecordError, match="no record paths given"):
        load_records([])


def test_a_missing_path_is_an_error(tmp_path):
    with pytest.raises(RecordError, match="no such file or folder"):
        load_records([tmp_path / "nope"])


def test_only_bad_files_is_an_error_quoting_the_first_problem(tmp_path):
    write_text(tmp_path / "a.json", "{")
    dump(tmp_path / "b.json", {"schema": "speedrun.record", "schema_version": 7})
    with pytest.raises(RecordError, match=r"no readable benchmark records among 2 file\(s\): skipped .*a\.json.*\(and 1 more\)"):
        load_records([tmp_path])


def test_a_file_passed_twice_is_read_once(cpu_records):
    records, problems = load_records([cpu_records.narrow, cpu_records.narrow.parent])
    assert sorted(r["source_file"] for r in records).count(str(cpu_records.narrow)) == 1
    assert problems == []


# --- renderings ------------------------------------------------------------------------------


@pytest.fixture
def mixed_groups(cpu_records, tmp_path):
    _copy(cpu_records.narrow, tmp_path)
    _copy(cpu_records.wide, tmp_path)
    _copy(cpu_records.unreachable, tmp_path)
    variant(cpu_records.load("wide"), tmp_path / "other-gpu.json",
            environment__device="cuda", environment__gpu_name="Simulated | GPU")
    records, _ = load_records([tmp_path])
    return build_leaderboard(records)


def test_json_holds_every_entry_with_raw_numbers(mixed_groups):
    doc = json.loads(render_json(mixed_groups))
    entries = [e for g in doc["groups"] for e in g["ranked"] + g["unranked"]]
    assert len(entries) == sum(len(g.entries) for g in mixed_groups)
    ranked = [e for g in doc["groups"] for e in g["ranked"]]
    assert all(0 <= e["accuracy_mean"] <= 1 and e["time_to_target_mean_s"] > 0 for e in ranked)
    assert set(entries[0]) == set(CSV_FIELDS)


def test_csv_parses_back_to_the_json_numbers(mixed_groups):
    rows = list(csv.DictReader(io.StringIO(render_csv(mixed_groups))))
    doc = json.loads(render_json(mixed_groups))
    entries = [e for g in doc["groups"] for e in g["ranked"] + g["unranked"]]
    assert len(rows) == len(entries)
    assert tuple(rows[0]) == CSV_FIELDS
    for row, entry in zip(rows, entries):
        assert row["recipe"] == entry["recipe"] and row["gpu"] == entry["gpu"]
        assert (row["rank"] == "") == (entry["rank"] is None)
        if entry["accuracy_mean"] is not None:
            assert float(row["accuracy_mean"]) == pytest.approx(entry["accuracy_mean"])
        if entry["time_to_target_mean_s"] is not None:
            assert float(row["time_to_target_mean_s"]) == pytest.approx(entry["time_to_target_mean_s"])


def test_markdown_is_one_well_formed_table_per_group(mixed_groups):
    text = render_markdown(mixed_groups)
    blocks = text.strip().split("\n\n### ")
    assert len(blocks) == len(mixed_groups)
    for block, group in zip(blocks, mixed_groups):
        lines = block.strip().splitlines()
        table = [line for line in lines if line.startswith("|")]
        cells = [_md_cells(line) for line in table]
        assert len({len(c) for c in cells}) == 1, "every row has the header's column count"
        assert all(set(c) <= set("-:") for c in cells[1])
        assert len(table) == 2 + len(group.entries)
    assert "Simulated \\| GPU" in text  # a pipe in a name is escaped, not a column break


def _md_cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]
    cells, current, escaped = [], "", False
    for ch in inner:
        if ch == "|" and not escaped:
            cells.append(current.strip())
            current = ""
        else:
            current += ch
        escaped = ch == "\\" and not escaped
    return [*cells, current.strip()]


def test_terminal_table_columns_line_up(mixed_groups):
    for block, group in zip(render_table(mixed_groups).strip().split("\n\n"), mixed_groups):
        title, header, rule, *rows = block.splitlines()
        assert title == group.title
        assert len(rows) == len(group.entries)
        gaps = [i for i, ch in enumerate(rule) if ch == " "]
        for line in [header, *rows]:
            assert all(i >= len(line) or line[i] == " " for i in gaps), line
        if group.unranked:
            assert header.rstrip().endswith("note")
            assert any(e.note in row for row in rows for e in group.unranked)


def test_render_rejects_an_unknown_format(mixed_groups):
    with pytest.raises(SpeedrunError, match="use one of table, markdown, csv, json"):
        render(mixed_groups, "html")


# --- command ---------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="speedrun")
    leaderboard_cmd.register(parser.add_subparsers(dest="command"), command("leaderboard"))
    return parser.parse_args(argv)


def test_command_prints_the_table_and_names_skipped_files_on_stderr(cpu_records, tmp_path, capsys):
    _copy(cpu_records.narrow, tmp_path)
    write_text(tmp_path / "broken.json", "{")
    args = _parse(["leaderboard", str(tmp_path), "--format", "json"])
    assert args.handler is leaderboard_cmd.run
    assert leaderboard_cmd.run(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["groups"][0]["ranked"][0]["recipe"] == "tiny-narrow"
    assert "broken.json" in err and "skipped" in err


def test_command_writes_out_file_and_never_overwrites(cpu_records, tmp_path, capsys):
    out = tmp_path / "board.md"
    args = _parse(["leaderboard", str(cpu_records.narrow), "--format", "markdown", "--out", str(out)])
    assert leaderboard_cmd.run(args) == 0
    first = out.read_text()
    assert first.startswith("### CPU")
    assert capsys.readouterr().out == ""
    with pytest.raises(SpeedrunError, match="already exists; choose another --out path"):
        leaderboard_cmd.run(args)
    assert out.read_text() == first
    before = cpu_records.narrow.read_bytes()
    with pytest.raises(SpeedrunError, match="already exists"):
        leaderboard_cmd.run(_parse(["leaderboard", str(cpu_records.narrow), "--out", str(cpu_records.narrow)]))
    assert cpu_records.narrow.read_bytes() == before


def test_cli_exits_2_with_one_line_for_an_empty_folder(tmp_path, capsys):
    from speedrun.cli import main

    assert main(["leaderboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("speedrun: error: no *.json records found") and "\n" not in err


def test_cli_ranks_a_folder_with_exit_0(cpu_records, capsys):
    from speedrun.cli import main

    assert main(["leaderboard", str(cpu_records.folder), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["recipe"] for r in rows} == {"tiny-narrow", "tiny-wide"}


def test_an_incomplete_record_is_read_ranked_on_its_finished_runs_and_says_so(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    cut = variant(record, tmp_path / "cut.json", complete=False, runs_planned=8, runs=record["runs"][:2])
    records, problems = load_records([cut])
    assert problems == []
    (group,) = build_leaderboard(records)
    (entry,) = group.entries
    assert entry.runs == 2 and entry.rank == 1
    assert entry.caveat == "incomplete record: 2 of 8 planned runs (cut short)"
    assert "incomplete record: 2 of 8 planned runs" in render_table([group])
    assert "incomplete record" in render_markdown([group])
    assert json.loads(render_json([group]))["groups"][0]["ranked"][0]["caveat"] == entry.caveat
