"""Export: the per-epoch CSV and DAWNBench's files hold what the record holds, for outside tools."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from speedrun.cli import main
from speedrun.errors import SpeedrunError
from speedrun.results.export import CSV_COLUMNS, dawnbench_metadata, dawnbench_tsv, export_record
from speedrun.results.records import read_record
from tests.results.dawnbench_checks import check_entries

COMMITTED = (Path(__file__).resolve().parents[2] / "results" / "calibration"
             / "20261201T230632Z-train-fast94-cpu-full-budget-seed0.json")      # a full CPU run: 90.65% best


def test_the_csv_has_one_row_per_epoch_of_every_run(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    (path,) = export_record(record, "csv", tmp_path / "e.csv", stem="narrow")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == sum(len(r["epochs"]) for r in record["runs"])
    first = record["runs"][0]["epochs"][0]
    assert float(rows[0]["elapsed_s"]) == pytest.approx(first["elapsed_s"]) and rows[0]["recipe"] == "tiny-narrow"
    assert {row["seed"] for row in rows} == {str(r["seed"]) for r in record["runs"]}


def test_dawnbench_output_is_one_json_and_its_same_named_tsv_per_run(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    lines: list[str] = []
    paths = export_record(record, "dawnbench", tmp_path / "db", stem="narrow", log=lines.append)
    assert any(re.search("never reach 94%", line) for line in lines), lines
    seeds = [run["seed"] for run in record["runs"]]
    assert sorted(p.name for p in paths) == sorted(f"narrow-seed{k}.{ext}" for k in seeds for ext in ("json", "tsv"))
    assert check_entries(tmp_path / "db", threshold=False) == sorted(f"narrow-seed{k}" for k in seeds)
    run = record["runs"][0]
    meta = json.loads((tmp_path / "db" / f"narrow-seed{run['seed']}.json").read_text())
    assert meta["version"] == "v1.0" and meta["hardware"] == "CPU" and meta["timestamp"] == record["created"][:10]
    assert record["environment"]["git_commit"] in meta["codeURL"]
    assert meta["misc"]["run"] == {"seed": run["seed"], "side": None, "status": run["status"]}
    lines = (tmp_path / "db" / f"narrow-seed{run['seed']}.tsv").read_text().splitlines()
    assert lines[0] == "epoch\thours\ttop1Accuracy"
    _, hours, accuracy = lines[1].split("\t")
    assert float(hours) == pytest.approx(run["epochs"][0]["elapsed_s"] / 3600, abs=1e-8)
    assert float(accuracy) == pytest.approx(100 * run["epochs"][0]["test_acc"], abs=1e-4)
    assert meta["misc"]["bestTop1Accuracy"] == max(float(line.split("\t")[2]) for line in lines[1:])


def test_a_committed_record_exports_entries_dawnbench_takes_but_for_the_94_percent_it_never_reached(tmp_path):
    record = read_record(COMMITTED)
    lines: list[str] = []
    export_record(record, "dawnbench", tmp_path / "db", stem=COMMITTED.stem, log=lines.append)
    assert any(re.search(r"1 of 1 DAWNBench entries never reach 94% top1Accuracy \(best 90\.65%\)", line) for line in lines), lines
    assert check_entries(tmp_path / "db", threshold=False) == [f"{COMMITTED.stem}-seed0"]
    with pytest.raises(AssertionError, match=r"top1Accuracy never reaches 94 \(best 90\.65\)"):
        check_entries(tmp_path / "db")                                  # DAWNBench's own threshold check
    misc = json.loads((tmp_path / "db" / f"{COMMITTED.stem}-seed0.json").read_text())["misc"]
    assert misc["reachedThreshold"] is False and misc["bestTop1Accuracy"] == 90.65
    assert "not a DAWNBench entry" in misc["note"] and "JPEG-q75" in misc["note"]


def test_a_run_that_reaches_94_percent_passes_every_dawnbench_check_and_carries_no_note(tmp_path, recwarn):
    record = read_record(COMMITTED)                     # the same record, its last epoch lifted to 94.00%
    record["runs"][0]["epochs"][-1]["test_acc"] = 0.9399999976158142        # 0.94 as float32 stores it
    export_record(record, "dawnbench", tmp_path / "db", stem="r")
    assert check_entries(tmp_path / "db") == ["r-seed0"] and not recwarn.list
    misc = json.loads((tmp_path / "db" / "r-seed0.json").read_text())["misc"]
    assert misc["reachedThreshold"] is True and misc["bestTop1Accuracy"] == 94 and "note" not in misc


def test_a_run_just_under_94_percent_is_not_rounded_over_it(tmp_path):
    record = read_record(COMMITTED)
    record["runs"][0]["epochs"][-1]["test_acc"] = 0.93996
    lines: list[str] = []
    export_record(record, "dawnbench", tmp_path / "db", stem="r", log=lines.append)
    assert any(re.search("best 93.996%", line) for line in lines), lines
    with pytest.raises(AssertionError, match="never reaches 94"):
        check_entries(tmp_path / "db")


def test_the_old_layout_a_json_beside_differently_named_tsvs_is_refused(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "narrow.json").write_text(json.dumps(dawnbench_metadata(record)))
    for run in record["runs"]:
        (folder / f"narrow-seed{run['seed']}.tsv").write_text(dawnbench_tsv(run))
    with pytest.raises(AssertionError, match=r"narrow\.tsv does not exist"):
        check_entries(folder, threshold=False)


def _entry(folder, meta, tsv):
    folder.mkdir()
    (folder / "e.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    if tsv is not None:
        (folder / "e.tsv").write_text(tsv)
    return folder


GOOD_META = {"version": "v1.0", "author": "a", "authorEmail": None, "framework": "PyTorch", "model": "m",
             "hardware": "h", "timestamp": "2026-12-01"}
GOOD_TSV = "epoch\thours\ttop1Accuracy\n1\t0.1\t93.5\n2\t0.2\t94.1\n"


@pytest.mark.parametrize("meta, tsv, problem", [
    ("{", GOOD_TSV, "not valid JSON"),
    ({k: v for k, v in GOOD_META.items() if k != "authorEmail"}, GOOD_TSV, "lacks the required field.* authorEmail"),
    ({**GOOD_META, "timestamp": "2026-12-01T10:00:00"}, GOOD_TSV, "timestamp .* is not yyyy-mm-dd"),
    ({**GOOD_META, "timestamp": None}, GOOD_TSV, "timestamp .* is not yyyy-mm-dd"),
    ({**GOOD_META, "version": "v2.0"}, GOOD_TSV, "version 'v2.0' is not one of"),
    (GOOD_META, None, "e.tsv does not exist"),
    (GOOD_META, "epoch,hours,top1Accuracy\n1,0.1,94.1\n", "the columns are"),
    (GOOD_META, "epoch\thours\ttop1Accuracy\ttop5Accuracy\n1\t0.1\t94.1\t99\n", "the columns are"),
    (GOOD_META, "epoch\thours\ttop1Accuracy\n", "a header and no row"),
    (GOOD_META, "epoch\thours\ttop1Accuracy\n1\t0.1\t93.99\n", "never reaches 94"),
    (GOOD_META, "epoch\thours\ttop1Accuracy\n1\t0.2\t90\n2\t0.1\t94.1\n", "hours fall back"),
    (GOOD_META, "epoch\thours\ttop1Accuracy\n1\t0.1\t0.95\n2\t0.2\t940\n", "not a percent"),
    ({**GOOD_META, "costPerHour": None}, GOOD_TSV, "costPerHour None is not a number"),
])
def test_the_checks_refuse_what_dawnbench_refuses(tmp_path, meta, tsv, problem):
    assert check_entries(_entry(tmp_path / "good", GOOD_META, GOOD_TSV)) == ["e"]
    with pytest.raises(AssertionError, match=problem):
        check_entries(_entry(tmp_path / "bad", meta, tsv))


def test_an_anchor_record_gives_one_entry_per_run_of_each_side(cpu_records, tmp_path):
    narrow = cpu_records.load("narrow")
    anchor = dict(narrow, kind="anchor", runs=[], sides=[{"label": "fast94 (a)", "runs": narrow["runs"][:2]},
                                                         {"label": "b", "runs": narrow["runs"][:1]}])
    lines: list[str] = []
    export_record(anchor, "dawnbench", tmp_path / "db", stem="anc", log=lines.append)
    assert any(re.search("3 of 3", line) for line in lines), lines
    k0, k1 = (run["seed"] for run in narrow["runs"][:2])
    names = check_entries(tmp_path / "db", threshold=False)
    assert names == sorted([f"anc-fast94__a-seed{k0}", f"anc-fast94__a-seed{k1}", f"anc-b-seed{k0}"])
    meta = json.loads((tmp_path / "db" / f"anc-b-seed{k0}.json").read_text())
    assert meta["misc"]["run"]["side"] == "b" and meta["misc"]["run"]["seed"] == k0


@pytest.mark.filterwarnings("ignore:.*never reach 94%")
def test_a_run_without_an_evaluated_epoch_has_no_entry(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    record = dict(record, runs=[dict(record["runs"][0], epochs=[]), *record["runs"][1:]])
    lines: list[str] = []
    paths = export_record(record, "dawnbench", tmp_path / "db", stem="n", log=lines.append)
    assert any(re.search(f"run seed{record['runs'][0]['seed']} has no evaluated epoch", line) for line in lines), lines
    assert len(paths) == 2 * (len(record["runs"]) - 1)
    lines = []
    with pytest.raises(SpeedrunError, match="nothing to export"):
        export_record(dict(record, runs=record["runs"][:1]), "dawnbench", tmp_path / "db2", stem="n", log=lines.append)
    assert any("no evaluated" in line for line in lines)


@pytest.mark.filterwarnings("ignore:.*never reach 94%")
def test_existing_files_are_never_replaced_without_force(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    export_record(record, "dawnbench", tmp_path / "db", stem="narrow")
    with pytest.raises(SpeedrunError, match="already exists"):
        export_record(record, "dawnbench", tmp_path / "db", stem="narrow")
    export_record(record, "dawnbench", tmp_path / "db", stem="narrow", force=True)


@pytest.mark.filterwarnings("ignore:.*never reach 94%")
def test_the_command_writes_beside_the_record_by_default(cpu_records, tmp_path, capsys):
    source = tmp_path / "r.json"
    source.write_text(cpu_records.narrow.read_text())
    assert main(["export", str(source)]) == 0
    assert (tmp_path / "r-epochs.csv").is_file()
    assert main(["export", str(source), "--format", "dawnbench"]) == 0
    assert check_entries(tmp_path / "r-dawnbench", threshold=False) == [f"r-seed{run['seed']}" for run in
                                                                        json.loads(source.read_text())["runs"]]
    assert main(["export", str(source)]) == 2                 # never over the CSV without --force
    assert "already exists" in capsys.readouterr().err
