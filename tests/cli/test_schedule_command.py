"""``speedrun schedule``: any policy drawn as PNG, CSV for .csv paths or without matplotlib, never overwriting."""
import csv

import pytest
import torch

from speedrun.cli import main
from speedrun.errors import SpeedrunError
from speedrun.schedules import cyclic_lr, one_cycle_lr, step_lr
from speedrun.schedules import plot as schedule_plot
from speedrun.schedules.plot import schedule_rows, write_schedule

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_rows_hold_every_steps_lr_and_momentum(tmp_path):
    schedule = cyclic_lr(40, 0.01, 0.1, step_size_up=10, mode="triangular2")
    rows = read_csv(write_schedule(schedule, tmp_path / "s.csv"))
    assert rows[0] == ["step", "lr", "momentum"] and len(rows) == 41
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(schedule.lr.tolist())
    assert [float(r[2]) for r in rows[1:]] == pytest.approx(schedule.momentum.tolist())


def test_momentum_is_empty_when_the_policy_leaves_it_alone(tmp_path):
    rows = read_csv(write_schedule(step_lr(6, 0.1, step_size=2), tmp_path / "s.csv"))
    assert {r[2] for r in rows[1:]} == {""}
    assert schedule_rows(step_lr(6, 0.1, step_size=2))[2] == (2, pytest.approx(0.01), None)


def test_png_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    path = write_schedule(one_cycle_lr(100, 0.4), tmp_path / "s.png")
    assert path == tmp_path / "s.png" and path.read_bytes().startswith(PNG_MAGIC)


def test_csv_instead_of_png_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(schedule_plot, "matplotlib_available", lambda: False)
    path = write_schedule(one_cycle_lr(100, 0.4), tmp_path / "s.png")
    assert path == tmp_path / "s.csv" and not (tmp_path / "s.png").exists()
    assert read_csv(path)[0] == ["step", "lr", "momentum"]


def test_an_existing_file_is_never_replaced_without_force(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("keep me")
    with pytest.raises(SpeedrunError, match="--force"):
        write_schedule(step_lr(6, 0.1, step_size=2), path)
    assert path.read_text() == "keep me"
    write_schedule(step_lr(6, 0.1, step_size=2), path, force=True)
    assert read_csv(path)[0] == ["step", "lr", "momentum"]


def test_the_command_draws_a_cyclical_policy(tmp_path, capsys):
    out = tmp_path / "lr.csv"
    argv = ["schedule", "--schedule", "cyclic_lr", "--base-lr", "0.01", "--max-lr", "0.1", "--mode", "triangular",
            "--step-size-up", "2ep", "--epochs", "10", "--steps-per-epoch", "98", "--plot", str(out)]
    assert main(argv) == 0
    rows = read_csv(out)
    lrs = torch.tensor([float(r[1]) for r in rows[1:]])
    assert len(lrs) == 980 and float(lrs.max()) == pytest.approx(0.1) and float(lrs[0]) == pytest.approx(0.01)
    assert int(lrs.argmax()) == 196   # the first peak after two epochs of 98 steps
    assert "cyclic_lr" in capsys.readouterr().out
    assert main(argv) == 2           # second time: the file exists
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0


def test_the_command_draws_a_recipes_schedule_by_default(tmp_path, capsys):
    assert main(["schedule", "--recipe", "classic", "--epochs", "4", "--steps-per-epoch", "10",
                 "--plot", str(tmp_path / "c.csv")]) == 0
    lrs = [float(r[1]) for r in read_csv(tmp_path / "c.csv")[1:]]
    assert len(lrs) == 40 and max(lrs) == pytest.approx(0.4, rel=0.05)


def test_the_command_names_a_bad_flag(capsys):
    assert main(["schedule", "--base-lr", "0.1"]) == 2
    assert "--schedule" in capsys.readouterr().err


def test_a_plot_path_that_is_neither_png_nor_csv_is_refused(tmp_path, capsys):
    assert main(["schedule", "--recipe", "classic", "--epochs", "2", "--steps-per-epoch", "5",
                 "--plot", str(tmp_path / "lr.txt")]) == 2
    assert "name a .png (a picture) or a .csv (the values) file" in capsys.readouterr().err
    assert not (tmp_path / "lr.txt").exists()
