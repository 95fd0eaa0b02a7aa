"""A sweep's folder: one file per run, merged into one record per variant that the readers rank."""
from __future__ import annotations

import copy

import pytest

from speedrun.errors import SpeedrunError
from speedrun.results.leaderboard import CONCURRENT_NOTE, build_leaderboard, load_records
from speedrun.results.records import read_record, validate_record, write_record
from speedrun.sweeps.store import Piece, SweepFolder, merge_runs, write_merged


def one_run(record: dict, index: int, *, gpu: str | None = None, concurrent: bool = False) -> dict:
    """A one-run record cut from a real CPU record, as a sweep's worker returns it."""
    out = copy.deepcopy(record)
    out.pop("source_file", None)
    out["runs"] = [out["runs"][index]]
    out["runs_planned"] = 1
    out["sweep"] = {"name": "t", "concurrent_times": concurrent}
    if gpu is not None:
        out["environment"] = {**out["environment"], "device": "cuda", "gpu_name": gpu}
    return out


def pieces_of(folder: SweepFolder, label: str, records: dict[int, dict], failed: dict[int, str] | None = None):
    failed = failed or {}
    for seed, record in records.items():
        folder.write_record_piece(folder.run_path(f"{label}/seed-{seed}"), record)
    for seed, error in failed.items():
        folder.write_failure(folder.run_path(f"{label}/seed-{seed}"), f"{label}/seed-{seed}", seed, error, 2)
    return {seed: folder.read_piece(folder.run_path(f"{label}/seed-{seed}")) for seed in (*records, *failed)}


def test_runs_merge_into_one_valid_record_with_a_failed_run_kept_as_failed(cpu_records, tmp_path):
    narrow = cpu_records.load("narrow")
    folder = SweepFolder(tmp_path)
    pieces = pieces_of(folder, "a", {0: one_run(narrow, 0, concurrent=True), 2: one_run(narrow, 2, concurrent=True)},
                       {1: "its worker died 2 time(s)"})
    [(gpu, merged)] = merge_runs("a", (0, 1, 2), pieces, {"name": "t"}, ["speedrun", "sweep"])
    validate_record(merged)
    assert gpu is None and merged["complete"] and merged["runs_planned"] == 3
    assert [(r["seed"], r["status"]) for r in merged["runs"]] == [(0, "ok"), (1, "failed"), (2, "ok")]
    assert merged["summary"]["runs"] == 3 and merged["summary"]["failed"] == 1
    assert merged["sweep"]["concurrent_times"] and merged["sweep"]["arm"] == "a"
    write_merged(folder, "a", [(gpu, merged)])
    [entry] = [e for g in build_leaderboard([read_record(tmp_path / "a.json")]) for e in g.entries]
    assert entry.note == CONCURRENT_NOTE


def test_a_variant_short_of_seeds_is_incomplete_and_one_with_no_record_yet_has_none(cpu_records, tmp_path):
    folder = SweepFolder(tmp_path)
    pieces = pieces_of(folder, "a", {0: one_run(cpu_records.load("narrow"), 0)})
    [(_, merged)] = merge_runs("a", (0, 1), pieces, {}, [])
    assert not merged["complete"]
    assert merge_runs("b", (0,), pieces_of(folder, "b", {}, {0: "boom"}), {}, []) == []


def test_runs_on_two_gpu_models_give_a_record_each(cpu_records, tmp_path):
    narrow = cpu_records.load("narrow")
    folder = SweepFolder(tmp_path)
    pieces = pieces_of(folder, "a", {0: one_run(narrow, 0, gpu="NVIDIA H200"), 1: one_run(narrow, 1, gpu="NVIDIA A100")})
    merged = merge_runs("a", (0, 1), pieces, {}, [])
    assert sorted(gpu for gpu, _ in merged) == ["NVIDIA A100", "NVIDIA H200"]
    paths = write_merged(folder, "a", merged)
    assert sorted(p.name for p in paths) == ["a--NVIDIA_A100.json", "a--NVIDIA_H200.json"]


def test_folder_scans_read_the_merged_records_and_leave_the_pieces_out(cpu_records, tmp_path):
    folder = SweepFolder(tmp_path)
    pieces = pieces_of(folder, "a", {0: one_run(cpu_records.load("narrow"), 0)})
    write_merged(folder, "a", merge_runs("a", (0,), pieces, {}, []))
    records, problems = load_records([tmp_path])
    assert not problems and [r["sweep"]["arm"] for r in records] == ["a"]
    records, _ = load_records([folder.run_path("a/seed-0")])
    assert len(records) == 1, "a piece named on its own is read"


@pytest.mark.parametrize("theirs", ["a.json", "runs/a/seed-0.run.json"])
def test_a_folder_holding_records_but_no_sweep_json_is_refused_as_it_is(cpu_records, tmp_path, theirs):
    mine = write_record({k: v for k, v in cpu_records.load("narrow").items() if k != "source_file"}, tmp_path / theirs)
    before = mine.read_bytes()
    with pytest.raises(SpeedrunError, match=r"but no sweep\.json: it is not a sweep's folder"):
        SweepFolder(tmp_path).check_owner({"a": {}})
    assert mine.read_bytes() == before and not (tmp_path / "sweep.json").exists()


def test_an_unreadable_piece_counts_as_not_run(tmp_path):
    folder = SweepFolder(tmp_path)
    path = folder.run_path("a/seed-0")
    path.parent.mkdir(parents=True)
    path.write_text("{half a rec")
    assert folder.read_piece(path) is None


def test_a_record_path_is_refused_as_a_sweep_folder(tmp_path):
    with pytest.raises(SpeedrunError, match="a sweep writes a folder"):
        SweepFolder(tmp_path / "x.json")


def test_a_table_row_shows_the_accuracy_as_float32_decimals_and_times_to_the_millisecond(tmp_path):
    record = {"runs": [{"train_time_s": 14.529870230988308, "time_to_target_s": None, "reached_target": False}]}
    row = Piece(tmp_path / "seed-0.run.json", record, status="ok", accuracy=0.3779999911785126).row()
    assert (row["accuracy"], row["train_time_s"], row["time_to_target_s"]) == (0.378, 14.53, None)
    assert Piece(tmp_path / "seed-1.run.json", error="killed").row()["accuracy"] is None
