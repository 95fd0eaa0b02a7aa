"""plots: three PNGs per record, never overwritten, and a clear error without matplotlib.

Records are real CPU runs from the harness (``records_fixture``). A CPU run has no NVML
telemetry, so the telemetry picture's drawn-curves case uses a real record with synthetic
samples added under ``runs[i].nvml.samples`` (said so at the test): this checks the drawing,
not any measured number.
"""
from __future__ import annotations

import argparse
import copy
import sys

import pytest

from speedrun.cli import command
from speedrun.cli import plot as plot_cmd
from speedrun.errors import SpeedrunError
from speedrun.results.plots import PLOT_NAMES, plot_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def matplotlib():
    """Skip before any training when the optional plot extra is absent (list it first)."""
    return pytest.importorskip("matplotlib")


def _assert_pngs(paths, folder, prefix, names=("accuracy", "schedule")):
    assert [p.name for p in paths] == [f"{prefix}-{name}.png" for name in names]
    for path in paths:
        assert path.parent == folder
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert not list(folder.glob(".*.tmp")), "no temp files left behind"


def test_writes_accuracy_schedule_and_gpu_pictures(matplotlib, cpu_records, tmp_path):
    paths = plot_record(cpu_records.load("narrow"), tmp_path, prefix="narrow")
    _assert_pngs(paths, tmp_path, "narrow")


def test_without_telemetry_no_gpu_picture_is_drawn_and_the_reason_is_said(matplotlib, cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    assert record["nvml"]["available"] is False  # CPU run: NVML had nothing to sample
    said = []
    paths = plot_record(record, tmp_path, prefix="cpu", log=said.append)
    assert [p.name for p in paths] == ["cpu-accuracy.png", "cpu-schedule.png"]
    assert len(said) == 1 and said[0].startswith("no GPU picture: the record holds no GPU telemetry (")


def test_an_lr_find_record_is_refused_with_where_its_curve_is(matplotlib, cpu_records, tmp_path):
    record = dict(cpu_records.load("narrow"), kind="lr_find", runs=[],
                  lr_find={"files": {"csv": "lr.csv", "png": "lr.png"}})
    with pytest.raises(SpeedrunError, match=r"its loss curve is lr\.csv, lr\.png"):
        plot_record(record, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_telemetry_samples_are_drawn(matplotlib, cpu_records, tmp_path):
    record = copy.deepcopy(cpu_records.load("narrow"))
    # Synthetic NVML samples [t_s, util_pct, mem_used_mib, power_w, sm_clock_mhz]: drawing check only.
    for i, run in enumerate(record["runs"]):
        run["nvml"] = {"available": True, "samples": [[0.05 * k, 90.0 - i, 4000.0, 250.0 + k, 1980.0] for k in range(40)]}
    record["nvml"] = {"available": True, "reason": None}
    paths = plot_record(record, tmp_path, prefix="gpu")
    assert [p.name for p in paths] == [f"gpu-{name}.png" for name in PLOT_NAMES]
    assert paths[2].read_bytes().startswith(PNG_MAGIC) and paths[2].stat().st_size > 5_000


def test_default_prefix_comes_from_the_record(matplotlib, cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    paths = plot_record(record, tmp_path)
    assert all(p.name.startswith(f"train-{record['recipe']}-") for p in paths)


def test_existing_pictures_are_never_overwritten(matplotlib, cpu_records, tmp_path):
    record = cpu_records.load("narrow")
    first = plot_record(record, tmp_path, prefix="r")
    before = [p.read_bytes() for p in first]
    second = plot_record(record, tmp_path, prefix="r")
    assert [p.name for p in second] == [f"r-1-{name}.png" for name in ("accuracy", "schedule")]
    assert [p.read_bytes() for p in first] == before


def test_a_record_without_a_schedule_or_curves_still_plots(matplotlib, cpu_records, tmp_path):
    record = copy.deepcopy(cpu_records.load("narrow"))
    record["schedule"] = {}
    for run in record["runs"]:
        for epoch in run["epochs"]:
            epoch["test_acc"] = None
    _assert_pngs(plot_record(record, tmp_path, prefix="bare"), tmp_path, "bare")


def test_out_dir_that_is_a_file_is_refused(matplotlib, cpu_records, tmp_path):
    not_a_dir = tmp_path / "file.png"
    not_a_dir.write_bytes(b"x")
    with pytest.raises(SpeedrunError, match=r"--out-dir .* is a file; give a folder"):
        plot_record(cpu_records.load("narrow"), not_a_dir)


def test_without_matplotlib_the_error_names_the_install(cpu_records, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + [
        "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"
    ]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(SpeedrunError) as err:
        plot_record(cpu_records.load("narrow"), tmp_path)
    assert str(err.value) == "plotting needs matplotlib: pip install 'speedrun[plot]'"
    assert list(tmp_path.iterdir()) == []


def test_command_names_the_pictures_after_the_record_file(matplotlib, cpu_records, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="speedrun")
    plot_cmd.register(parser.add_subparsers(dest="command"), command("plot"))
    args = parser.parse_args(["plot", str(cpu_records.wide), "--out-dir", str(tmp_path / "pics")])
    assert args.handler is plot_cmd.run
    assert plot_cmd.run(args) == 0
    printed = capsys.readouterr().out.split()
    stem = cpu_records.wide.stem
    assert printed == [str(tmp_path / "pics" / f"{stem}-{name}.png") for name in ("accuracy", "schedule")]


def test_cli_exits_2_for_a_newer_schema_record(tmp_path, capsys):
    from speedrun.cli import main

    newer = tmp_path / "newer.json"
    newer.write_text('{"schema": "speedrun.record", "schema_version": 99}', encoding="utf-8")
    assert main(["plot", str(newer), "--out-dir", str(tmp_path / "pics")]) == 2
    assert "upgrade speedrun to read it" in capsys.readouterr().err
    assert not (tmp_path / "pics").exists()


def test_every_picture_of_an_incomplete_record_says_so(matplotlib, cpu_records, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    titles = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (
        titles.append(" ".join(ax.get_title() for ax in fig.axes)), savefig(fig, *a, **k))[1])
    record = dict(cpu_records.load("narrow"), complete=False, runs_planned=9)
    plot_record(record, tmp_path, prefix="cut")
    assert len(titles) == 2           # accuracy and schedule: a CPU record has no GPU picture
    assert all("incomplete record: 3 of 9 planned runs (cut short)" in t for t in titles), titles


def test_a_muon_records_schedule_shows_muons_own_momentum_beside_the_sgd_groups(matplotlib, cpu_records):
    from matplotlib.figure import Figure

    from speedrun.results.plots import _draw_schedule

    record = copy.deepcopy(cpu_records.load("narrow"))
    record["config"]["recipe"]["optimizer"].update(name="muon", momentum=0.85, muon_momentum=0.6)
    fig = Figure()
    _draw_schedule(fig, record)
    labels = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
    assert any(label.startswith("momentum 0.85") for label in labels)
    assert any(label.startswith("Muon momentum 0.6 (filters") for label in labels)
    plain = copy.deepcopy(cpu_records.load("narrow"))
    fig = Figure()
    _draw_schedule(fig, plain)
    assert not any("Muon" in line.get_label() for ax in fig.axes for line in ax.get_lines())
