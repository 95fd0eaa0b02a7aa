"""Export: the per-epoch CSV and DAWNBench's files hold what the record holds, for outside tools."""
from __future__ import annotations

import csv
import io
import json

import pytest

from speedrun.cli import main
from speedrun.errors import SpeedrunError
from speedrun.results.export import CSV_COLUMNS, export_record


def test_the_csv_has_one_row_per_epoch_of_every_run(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    (path,) = export_record(record, "csv", tmp_path / "e.csv", stem="narrow")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == sum(len(r["epochs"]) for r in record["runs"])
    first = record["runs"][0]["epochs"][0]
    assert float(rows[0]["elapsed_s"]) == pytest.approx(first["elapsed_s"]) and rows[0]["recipe"] == "tiny-narrow"
    assert {row["seed"] for row in rows} == {str(r["seed"]) for r in record["runs"]}


def test_dawnbench_output_is_metadata_and_an_epoch_hours_accuracy_tsv_per_run(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    paths = export_record(record, "dawnbench", tmp_path / "db", stem="narrow")
    meta = json.loads((tmp_path / "db" / "narrow.json").read_text())
    assert meta["version"] == "v1.0" and meta["hardware"] == "CPU" and meta["timestamp"] == record["created"][:10]
    assert record["environment"]["git_commit"] in meta["codeURL"]
    tsvs = sorted(p for p in paths if p.suffix == ".tsv")
    assert len(tsvs) == len(record["runs"])
    lines = tsvs[0].read_text().splitlines()
    assert lines[0] == "epoch\thours\ttop1Accuracy"
    _, hours, accuracy = lines[1].split("\t")
    run = next(r for r in record["runs"] if f"seed{r['seed']}" in tsvs[0].name)
    assert float(hours) == pytest.approx(run["epochs"][0]["elapsed_s"] / 3600, abs=1e-8)
    assert float(accuracy) == pytest.approx(100 * run["epochs"][0]["test_acc"], abs=0.01)


def test_existing_files_are_never_replaced_without_force(cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    export_record(record, "dawnbench", tmp_path / "db", stem="narrow")
    with pytest.raises(SpeedrunError, match="already exists"):
        export_record(record, "dawnbench", tmp_path / "db", stem="narrow")
    export_record(record, "dawnbench", tmp_path / "db", stem="narrow", force=True)


def test_the_command_writes_beside_the_record_by_default(cpu_records, tmp_path, capsys):
    source = tmp_path / "r.json"
    source.write_text(cpu_records.narrow.read_text())
    assert main(["export", str(source)]) == 0
    assert (tmp_path / "r-epochs.csv").is_file()
    assert main(["export", str(source), "--format", "dawnbench"]) == 0
    assert (tmp_path / "r-dawnbench" / "r.json").is_file()
    assert main(["export", str(source)]) == 2                 # never over the CSV without --force
    assert "already exists" in capsys.readouterr().err
