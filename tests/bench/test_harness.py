"""Seeded runs through the harness produce a valid, complete record; failures are recorded."""
import json
from pathlib import Path

import pytest

from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.models.resnet9 import ResNet9Config
from speedrun.recipes import CLASSIC
from speedrun.results.records import read_record
from speedrun.training.config import TrainConfig

TINY_RECIPE = CLASSIC.replace(model=ResNet9Config(widths=(8, 16, 16, 32)),
                              train=TrainConfig(epochs=2, batch_size=32, eval_every=1))


def test_record_holds_every_run_and_a_summary(tmp_path, make_synthetic_cifar10):
    lines = []
    record = run_benchmark(TINY_RECIPE, HarnessOptions(runs=2, seed=5, target=0.05, out=str(tmp_path)),
                           data=make_synthetic_cifar10(train=128, test=32), log=lines.append)
    stored = read_record(record["_path"])  # schema-checked on the way back in
    assert [r["seed"] for r in stored["runs"]] == [5, 6]
    assert stored["summary"]["runs"] == 2 and stored["summary"]["reached"] == 2
    acc = stored["summary"]["accuracy"]
    assert acc["n"] == 2 and acc["ci95_low"] <= acc["mean"] <= acc["ci95_high"]
    assert stored["dataset"]["name"] == "synthetic" and stored["dataset"]["train_size"] == 128
    assert stored["config"]["recipe"]["name"] == "classic" and stored["timer_rule"]
    assert len(stored["schedule"]["lr"]) == 2 * 4 and stored["schedule"]["steps_per_epoch"] == 4
    assert stored["nvml"]["available"] is False and "no CUDA" in stored["nvml"]["reason"]
    assert stored["environment"]["device"] == "cpu" and stored["environment"]["torch"]
    assert any(line.startswith("epoch") for line in lines) and any("95% CI" in line for line in lines)
    epochs = [line for line in lines if line.lstrip()[:1].isdigit() and len(line.split()) >= 6]
    assert epochs and " left" in epochs[0], "a CPU run says the time left"


def test_the_time_left_counts_this_runs_epochs_and_every_run_after_it():
    from speedrun.bench.harness import epoch_logger
    from speedrun.training.run_result import EpochLog
    lines: list[str] = []
    epoch_logger(lines.append, 4, 2)(EpochLog(epoch=1, lr=0.1, train_loss=1.0, train_acc=None, test_acc=None,
                                              elapsed_s=30.0))
    assert lines[0].endswith("about 5m30s left")        # 30 s an epoch: 3 more here, 8 in the 2 runs after
    epoch_logger(lines.append, 4, None)(EpochLog(epoch=1, lr=0.1, train_loss=1.0, train_acc=None, test_acc=None,
                                                 elapsed_s=30.0))
    assert "left" not in lines[1], "no estimate where none is wanted (a GPU run)"


def test_a_diverging_run_is_recorded_as_failed_and_the_next_goes_on(tmp_path, make_synthetic_cifar10):
    from speedrun.recipes import ScheduleSpec
    exploding = TINY_RECIPE.replace(schedule=ScheduleSpec("piecewise_linear", knots=((0, 1e6), (8, 1e6))))
    record = run_benchmark(exploding, HarnessOptions(runs=2, out=str(tmp_path / "r.json")),
                           data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    assert [r["status"] for r in record["runs"]] == ["diverged", "diverged"]
    assert record["summary"]["failed"] == 2 and record["summary"]["accuracy"]["mean"] is None
    json.loads((tmp_path / "r.json").read_text())  # strict JSON: no NaN anywhere


def test_subsets_and_no_record(make_synthetic_cifar10, tmp_path):
    record = run_benchmark(TINY_RECIPE, HarnessOptions(train_subset=64, test_subset=16, out=None),
                           data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    assert record["dataset"]["train_size"] == 64 and record["dataset"]["test_size"] == 16
    assert "_path" not in record and not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs,match", [(dict(runs=0), "runs"), (dict(target=94), "target")])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HarnessOptions(**kwargs)


def test_environment_and_commit_are_read_before_training(monkeypatch, make_synthetic_cifar10):
    """The record must name the code that ran, i.e. the commit when the run started, not when it ended."""
    import speedrun.bench.harness as harness
    from speedrun.training.trainer import Trainer

    events = []
    real_describe, real_run = harness.describe_environment, Trainer.run
    monkeypatch.setattr(harness, "describe_environment",
                        lambda *a, **k: events.append("environment") or real_describe(*a, **k))
    monkeypatch.setattr(Trainer, "run", lambda self, *a, **k: events.append("train") or real_run(self, *a, **k))
    record = run_benchmark(TINY_RECIPE, HarnessOptions(runs=2, out=None),
                           data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    assert events == ["environment", "train", "train"]
    assert record["environment"]["device"] == "cpu"


def test_the_recorded_schedule_is_the_one_the_runs_used(make_synthetic_cifar10):
    """SWA rewrites the schedule's tail; the record must show that tail, not the policy's curve."""
    from speedrun.extensions.swa import SWAConfig
    recipe = TINY_RECIPE.replace(extensions=(SWAConfig(epochs=1, swa_lr=0.0123),))
    record = run_benchmark(recipe, HarnessOptions(out=None), data=make_synthetic_cifar10(train=128, test=32),
                           log=lambda _: None)
    lr = record["schedule"]["lr"]
    policy = recipe.schedule.build(len(lr), record["schedule"]["steps_per_epoch"]).lr
    half = len(lr) // 2
    assert lr[:half] == pytest.approx(policy[:half].tolist(), rel=1e-6)
    assert lr[half:] == pytest.approx([0.0123] * half, rel=1e-6)
    assert record["schedule"]["lr_last"] == lr[-1] == 0.0123, "the last rate as used, written as float32 gives it"
    assert record["schedule"]["lr_first"] == lr[0] and record["schedule"]["lr_peak"] == max(lr)
    assert all(len(repr(v)) <= 12 for v in lr), "float32 values, shortest: no float32 noise in the record"
    assert record["runs"][0]["extension"]["method"] == "swa"


def test_the_record_is_rewritten_after_every_run_and_complete_only_after_the_last(tmp_path, make_synthetic_cifar10):
    path = tmp_path / "r.json"
    seen = []

    def log(line: str) -> None:     # when run k starts, the record holds runs 1..k-1
        if line.startswith("run ") and "/3" in line:
            seen.append(read_record(path) if path.exists() else None)

    record = run_benchmark(TINY_RECIPE, HarnessOptions(runs=3, out=str(path)),
                           data=make_synthetic_cifar10(train=128, test=32), log=log)
    assert seen[0] is None
    assert [len(r["runs"]) for r in seen[1:]] == [1, 2]
    assert [r["complete"] for r in seen[1:]] == [False, False]
    assert all(r["runs_planned"] == 3 and r["summary"]["runs"] == len(r["runs"]) for r in seen[1:])
    assert record["complete"] is True and read_record(path)["complete"] is True


def test_an_existing_record_file_is_refused_before_any_work_unless_forced(tmp_path, make_synthetic_cifar10):
    from speedrun.errors import SpeedrunError
    path = tmp_path / "r.json"
    path.write_text("precious")
    with pytest.raises(SpeedrunError, match=r"already exists.*--force"):
        run_benchmark(TINY_RECIPE, HarnessOptions(out=str(path)), data=make_synthetic_cifar10(train=128, test=32),
                      log=lambda _: None)
    assert path.read_text() == "precious"
    run_benchmark(TINY_RECIPE, HarnessOptions(out=str(path), force=True),
                  data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    assert read_record(path)["complete"] is True


def test_a_command_killed_during_its_second_run_leaves_a_valid_record_of_the_first(tmp_path, real_cifar10):
    """SIGKILL, as a time limit on the GPU machine sends: nothing gets to clean up, the record stands."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "killed.json"
    command = [sys.executable, "-m", "speedrun", "--data-dir", str(real_cifar10.origin), "--train-subset", "256",
               "--test-subset", "64", "--device", "cpu", "--no-compile",
               "--width", "0.125", "--epochs", "30", "--batch-size", "32", "--runs", "3", "--target", "0.99",
               "--full-budget", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    repo = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=str(repo))
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            runs_started = sum(1 for seen in lines if seen.startswith("run "))
            if line.startswith("    2  ") and runs_started == 2:     # run 2's second epoch is logged: mid-run
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(lines)
    record = read_record(out)
    assert record["complete"] is False and record["runs_planned"] == 3
    assert [r["seed"] for r in record["runs"]] == [0] and len(record["runs"][0]["epochs"]) == 30
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".killed.json")], "no temp file left behind"


def test_the_record_says_where_its_target_came_from_and_holds_the_data_checksums(make_synthetic_cifar10):
    lines = []
    data = make_synthetic_cifar10(train=128, test=32)
    record = run_benchmark(TINY_RECIPE, HarnessOptions(out=None), data=data, log=lines.append)
    assert record["target"] == TINY_RECIPE.target
    assert record["target_source"].startswith("not calibrated on synthetic")
    assert any(line.startswith("warning: target 0.94: not calibrated") for line in lines)
    assert record["dataset"]["sha256"] == data.checksums()
    given = run_benchmark(TINY_RECIPE, HarnessOptions(out=None, target=0.2), data=data, log=lambda _: None)
    assert (given["target"], given["target_source"]) == (0.2, "given (--target)")


@pytest.mark.parametrize("out,message", [
    ("", "out is empty"),
    ("file.txt/records", "lies under"),
    ("file.txt", "is a file"),
    ("folder.json", "is a folder"),
    ("readonly/records", "cannot write in .*readonly"),
])
def test_a_bad_output_location_is_refused_before_any_work(tmp_path, make_synthetic_cifar10, monkeypatch, out, message):
    import errno
    import tempfile

    from speedrun.errors import SpeedrunError
    from speedrun.training.trainer import Trainer

    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "readonly").mkdir()
    # The check tries a temporary file; refused here, since a test run as root may write anywhere.
    real_temporary_file = tempfile.TemporaryFile

    def temporary_file(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).name == "readonly":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_temporary_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    monkeypatch.setattr(Trainer, "rehearse", lambda *a, **k: pytest.fail("work started before the check"))
    target = str(tmp_path / out) if out else ""
    with pytest.raises(SpeedrunError, match=message):
        run_benchmark(TINY_RECIPE, HarnessOptions(out=target), data=make_synthetic_cifar10(train=128, test=32),
                      log=lambda _: None)
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def test_an_upper_case_json_suffix_names_a_file_not_a_folder(tmp_path, make_synthetic_cifar10):
    record = run_benchmark(TINY_RECIPE, HarnessOptions(out=str(tmp_path / "R.JSON")),
                           data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    assert (tmp_path / "R.JSON").is_file() and read_record(record["_path"])["complete"] is True


def test_a_name_taken_meanwhile_is_never_overwritten(tmp_path, make_synthetic_cifar10, monkeypatch):
    """Two commands starting in the same second pick the same default name: the second gets another."""
    import speedrun.bench.harness as harness

    fixed = tmp_path / "20260101T000000Z-train-classic.json"
    taken = {"n": 0}

    def same_name(folder, recipe, kind):
        taken["n"] += 1
        return fixed if taken["n"] == 1 else tmp_path / f"other-{taken['n']}.json"

    monkeypatch.setattr(harness, "default_record_path", same_name)
    writer = harness.RecordWriter(HarnessOptions(out=str(tmp_path)), "classic", "train", log=lambda _: None)
    fixed.write_text("another command's record")          # written after our name was chosen
    record = run_benchmark(TINY_RECIPE, HarnessOptions(out=None), data=make_synthetic_cifar10(train=128, test=32),
                           log=lambda _: None)
    written = writer.write({k: v for k, v in record.items() if k != "complete"}, complete=True)
    assert fixed.read_text() == "another command's record"
    assert written["_path"] != str(fixed) and read_record(written["_path"])["complete"] is True


def test_a_write_that_fails_keeps_the_record_elsewhere_and_says_where(tmp_path, make_synthetic_cifar10, monkeypatch):
    import speedrun.bench.harness as harness

    real_write = harness.write_record
    calls = {"n": 0}

    def flaky(record, path, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return real_write(record, path, **kwargs)

    monkeypatch.setattr(harness, "write_record", flaky)
    lines = []
    record = run_benchmark(TINY_RECIPE, HarnessOptions(out=str(tmp_path / "r.json")),
                           data=make_synthetic_cifar10(train=128, test=32), log=lines.append)
    warning = next(line for line in lines if line.startswith("warning: could not write"))
    assert "No space left on device" in warning and record["_path"] in warning
    assert read_record(record["_path"])["complete"] is True and not (tmp_path / "r.json").exists()


def test_an_interrupted_run_leaves_a_record_that_says_so(tmp_path, make_synthetic_cifar10, monkeypatch):
    from speedrun.training.trainer import Trainer

    real_run = Trainer.run
    calls = {"n": 0}

    def run_then_interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt      # Ctrl-C, or SIGTERM as the CLI takes it, in the second run
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "run", run_then_interrupt)
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(TINY_RECIPE, HarnessOptions(out=str(out), runs=3, target=0.2),
                      data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)
    record = read_record(out)
    assert record["interrupted"] is True and record["complete"] is False
    assert len(record["runs"]) == 1 and record["runs_planned"] == 3
