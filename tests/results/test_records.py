import json
import os

import pytest

from speedrun.errors import RecordError
from speedrun.results.records import (
    SCHEMA_VERSION,
    find_record_files,
    read_record,
    validate_record,
    write_record,
)


def minimal_record(**changes) -> dict:
    """The smallest valid shape; behaviour tests on real runs live in test_harness.py."""
    record = {
        "schema": "speedrun.record", "schema_version": SCHEMA_VERSION, "kind": "train",
        "created": "2026-11-23T00:00:00+00:00", "recipe": "classic", "target": 0.94,
        "config": {}, "dataset": {"name": "synthetic"}, "environment": {"device": "cpu"},
        "timer_rule": "rule",
        "runs": [{"seed": 0, "status": "ok", "reached_target": False,
                  "epochs": [{"epoch": 1, "train_loss": 2.3, "elapsed_s": 1.0}]}],
        "summary": {"runs": 1, "reached": 0}, "complete": True, "runs_planned": 1,
    }
    record.update(changes)
    return record


def test_round_trip(tmp_path):
    path = write_record(minimal_record(), tmp_path / "sub" / "r.json")
    assert read_record(path) == minimal_record()
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_record(minimal_record(), tmp_path / "r.json")
    before = path.read_text()
    with pytest.raises(RecordError):
        write_record(minimal_record(target=float("nan")), path)
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize("record,message", [
    ({k: v for k, v in minimal_record().items() if k != "complete"}, "missing field 'complete'"),
    (minimal_record(runs_planned="3"), "'runs_planned' must be int"),
    (minimal_record(schema_version=SCHEMA_VERSION + 1), "newer than this speedrun"),
    (minimal_record(schema="other"), "not a speedrun record"),
    ({k: v for k, v in minimal_record().items() if k != "runs"}, "missing field 'runs'"),
    (minimal_record(target="0.94"), "'target' must be"),
    (minimal_record(target=1.5), "accuracy in"),
    (minimal_record(runs=[{"seed": 0, "status": "weird", "reached_target": False, "epochs": []}]), "status"),
    (minimal_record(runs=[{"seed": 0, "status": "ok", "reached_target": 1, "epochs": []}]), "reached_target"),
    (minimal_record(summary={"runs": 1, "reached": 0, "x": float("inf")}), "non-finite"),
])
def test_invalid_records_are_named(record, message):
    with pytest.raises(RecordError, match=message):
        validate_record(record, source="r.json")


def test_read_reports_file_and_problem(tmp_path):
    truncated = tmp_path / "cut.json"
    truncated.write_text(json.dumps(minimal_record())[:50])
    with pytest.raises(RecordError, match=r"cut\.json.*cut short"):
        read_record(truncated)
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(minimal_record()).replace('"target": 0.94', '"target": NaN'))
    with pytest.raises(RecordError, match=r"nan\.json"):
        read_record(nan)
    with pytest.raises(RecordError, match="no such record"):
        read_record(tmp_path / "missing.json")


def test_find_record_files_expands_folders(tmp_path):
    write_record(minimal_record(), tmp_path / "a" / "1.json")
    write_record(minimal_record(), tmp_path / "a" / "b" / "2.json")
    assert [p.name for p in find_record_files([tmp_path / "a"])] == ["1.json", "2.json"]
    with pytest.raises(RecordError, match="no such file"):
        find_record_files([tmp_path / "nope"])


def test_a_version_1_record_has_no_completeness_fields_and_counts_as_complete():
    from speedrun.results.records import completeness_note, is_complete
    old = {k: v for k, v in minimal_record(schema_version=1).items() if k not in ("complete", "runs_planned")}
    validate_record(old)
    assert is_complete(old) and completeness_note(old) == ""


def test_an_incomplete_record_says_how_far_it_got():
    from speedrun.results.records import completeness_note, is_complete
    cut = minimal_record(complete=False, runs_planned=8)
    assert not is_complete(cut)
    assert completeness_note(cut) == "incomplete record: 1 of 8 planned runs (cut short)"


WRONG_TYPES = [("schedule", "cosine"), ("nvml", 5), ("flops", [1]), ("setup", "fast"), ("command", "speedrun")]
RUN_WRONG_TYPES = [("final_test_acc", "0.9"), ("time_to_target_s", "NaN"), ("nvml", [])]


@pytest.mark.parametrize(("field", "value"), WRONG_TYPES)
def test_a_present_field_of_the_wrong_type_is_named(field, value):
    with pytest.raises(RecordError, match=f"'{field}'"):
        validate_record(minimal_record(**{field: value}), "r.json")


@pytest.mark.parametrize(("field", "value"), RUN_WRONG_TYPES)
def test_a_run_field_of_the_wrong_type_is_named(field, value):
    record = minimal_record()
    record["runs"][0][field] = value
    with pytest.raises(RecordError, match=f"runs\\[0\\]: field '{field}'"):
        validate_record(record, "r.json")


@pytest.mark.parametrize("command", ["leaderboard", "compare", "export", "plot"])
def test_every_reader_refuses_a_mistyped_record_in_one_line(command, tmp_path, capsys):
    from speedrun.cli import main

    path = tmp_path / "r.json"
    path.write_text(json.dumps(minimal_record(schedule="cosine")))
    args = {"compare": [str(path), str(path)]}.get(command, [str(path)])
    code = main([command, *args])
    err = capsys.readouterr().err
    assert code == 2 and "r.json" in err and "'schedule'" in err, err
    assert len(err.strip().splitlines()) <= 2      # leaderboard names the skipped file, then finds nothing
