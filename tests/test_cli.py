"""The command line: a thin layer whose user errors are one line and exit code 2."""
import json
import subprocess
import sys

import pytest

from speedrun.cli import main


@pytest.fixture
def npz_dataset(real_cifar10):
    """The CLI reads real, full-size CIFAR-10 files only; subsets keep the runs short."""
    return real_cifar10.origin


TINY_FLAGS = ["--epochs", "1", "--batch-size", "32", "--width", "0.125", "--no-compile", "--device", "cpu",
              "--train-subset", "64", "--test-subset", "32"]


def test_default_command_trains_and_writes_a_record(npz_dataset, tmp_path, capsys):
    out = tmp_path / "records"
    code = main([*TINY_FLAGS, "--data-dir", str(npz_dataset), "--target", "0.05", "--runs", "2", "--out", str(out)])
    assert code == 0
    (path,) = out.glob("*.json")
    record = json.loads(path.read_text())
    assert record["command"][0] == "speedrun" and record["summary"]["runs"] == 2
    assert record["config"]["harness"]["train_subset"] == 64
    assert record["dataset"]["name"] == "CIFAR-10 (JPEG-q75 copy)"
    printed = capsys.readouterr().out
    assert "epoch" in printed and "record:" in printed


def test_schedule_flags_choose_the_policy(npz_dataset, tmp_path):
    out = tmp_path / "r.json"
    code = main([*TINY_FLAGS, "--epochs", "2", "--data-dir", str(npz_dataset), "--out", str(out),
                 "--schedule", "cyclic_lr", "--base-lr", "0.01", "--max-lr", "0.1", "--mode", "triangular2",
                 "--step-size-up", "1ep"])
    assert code == 0
    schedule = json.loads(out.read_text())["schedule"]
    assert schedule["name"] == "cyclic_lr" and schedule["params"]["mode"] == "triangular2"
    assert schedule["lr"][0] == pytest.approx(0.01) and max(schedule["lr"]) == pytest.approx(0.1)
    assert schedule["momentum"] is not None  # cyclic_lr cycles momentum by default


@pytest.mark.parametrize("argv,needle", [
    (["--target", "1.5"], "target"),
    (["--runs", "0"], "runs"),
    (["--recipe", "nope"], "unknown recipe"),
    (["--epochs", "0"], "epochs"),
    (["--optimizer", "adagrad", "--schedule", "one_cycle_lr", "--max-lr", "0.1"], "cycle_momentum"),
    (["--schedule", "cosine_annealing_lr", "--base-lr", "0.1", "--mode", "triangular"], "--mode"),
    (["--base-lr", "0.1"], "--schedule NAME"),
    (["--max-lr", "auto", "--schedule", "cosine_annealing_lr"], "max_lr"),
    (["--swa-epochs", "3"], "--swa-lr"),
    (["--schedule", "nope"], "nope"),
    (["--data-dir", "/definitely/not/here"], "/definitely/not/here"),
    (["--train-subset", "100000"], "--train-subset"),
    (["--width", "-1"], "--width"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, npz_dataset, tmp_path, capsys):
    argv = argv if "--data-dir" in argv else ["--data-dir", str(npz_dataset), *argv]
    code = main([*TINY_FLAGS, *argv, "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("speedrun: error:") and needle in err[0]
    assert not (tmp_path / "never").exists()


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "speedrun", "--data-dir", str(tmp_path / "missing"), "--no-record"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("speedrun: error:")
