"""Every file any command writes goes through one output layer: a path that could not be written
is refused in one line naming its flag, exit 2, before any work (the data here does not even
exist, so a command that started work would fail on the data instead), and nothing is changed."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from speedrun.cli import main
from speedrun.outputs import check_output, publish
from tests.results.test_records import minimal_record

NO_DATA = ["--data-dir", "/nonexistent/cifar10", "--no-download", "--device", "cpu"]

# (command words before the path, the flag, whether the path names a file or a folder)
WRITERS = [
    (["train", *NO_DATA], "--out", "file.json"),
    (["train", *NO_DATA], "--out", "folder"),
    (["lr-find", *NO_DATA], "--out", "file.json"),
    (["lr-find", *NO_DATA], "--out", "folder"),
    (["profile", *NO_DATA], "--markdown", "file.md"),
    (["profile", *NO_DATA], "--trace", "file.json"),
    (["leaderboard", "RECORD"], "--out", "file.txt"),
    (["export", "RECORD"], "--out", "file.csv"),
    (["export", "RECORD", "--format", "dawnbench"], "--out", "folder"),
    (["schedule"], "--plot", "file.csv"),
    (["plot", "RECORD"], "--out-dir", "folder"),
    (["anchor", "airbench94", *NO_DATA], "--workdir", "folder"),
]
PROBLEMS = ["too-long", "dangling-link", "under-a-file", "not-writable", "empty"]


def _bad_path(problem: str, root: Path, name: str) -> str:
    if problem == "too-long":
        return str(root / ("x" * 300 + Path(name).suffix))
    if problem == "dangling-link":
        (root / name).symlink_to(root / "nowhere" / name)
        return str(root / name)
    if problem == "under-a-file":
        return str(root / "afile" / "sub" / name)
    if problem == "not-writable":
        return str(root / "locked" / name)
    return ""


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize(("words", "flag", "name"), WRITERS, ids=[f"{w[0]}{f}-{n}" for w, f, n in WRITERS])
def test_an_unwritable_output_is_one_line_before_any_work(words, flag, name, problem, tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "locked").mkdir()
    record = tmp_path / "r.json"
    record.write_text(json.dumps(minimal_record()))
    real_temporary_file = tempfile.TemporaryFile

    def refuse_locked(*args, dir=None, **kwargs):    # a test run as root may write anywhere
        if dir is not None and Path(dir).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_temporary_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse_locked)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = [str(record) if w == "RECORD" else w for w in words]
    code = main([*argv, f"{flag}={_bad_path(problem, tmp_path, name)}"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert flag in lines[0] or (problem == "empty" and "empty" in lines[0]), err
    assert "cifar10" not in lines[0], "the data was reached: work started before the output was checked"
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, "nothing is written or changed"


@pytest.mark.parametrize(("words", "flag", "name"), [w for w in WRITERS if w[2] != "folder"],
                         ids=[f"{w[0]}{f}" for w, f, n in WRITERS if n != "folder"])
def test_an_existing_file_is_never_replaced(words, flag, name, tmp_path, capsys):
    record = tmp_path / "r.json"
    record.write_text(json.dumps(minimal_record()))
    existing = tmp_path / name
    existing.write_text("keep me")
    argv = [str(record) if w == "RECORD" else w for w in words]
    assert main([*argv, flag, str(existing)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1
    assert existing.read_text() == "keep me"


def test_a_concurrent_writer_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "table.txt"

    def write(f):
        path.write_text("the other writer's")      # lands while ours is being written
        f.write("ours")

    with pytest.raises(Exception, match="appeared while this command ran"):
        publish(path, write, binary=False)
    assert path.read_text() == "the other writer's"
    assert [p.name for p in tmp_path.iterdir()] == ["table.txt"], "no temporary file is left"


def test_a_full_disk_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "s.csv"
    path.write_text("old")

    def full(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(Exception, match=r"could not write .*s\.csv \(No space left on device\)"):
        publish(path, full, binary=False, replace=True, flag="--plot")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_check_output_accepts_a_new_path_in_a_new_folder(tmp_path):
    assert check_output(tmp_path / "a" / "b" / "r.json", flag="--out") == tmp_path / "a" / "b" / "r.json"
    assert not (tmp_path / "a").exists(), "checking creates nothing"


def _full_disk(monkeypatch):
    import speedrun.outputs as outputs

    def no_space(path, write, *, binary, exclusive=False):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "write_atomically", no_space)


@pytest.mark.parametrize("words", [
    ["leaderboard", "RECORD", "--out", "OUT/lb.txt"],
    ["export", "RECORD", "--out", "OUT/e.csv"],
    ["export", "RECORD", "--format", "dawnbench", "--out", "OUT/db"],
    ["schedule", "--plot", "OUT/s.csv"],
    ["plot", "RECORD", "--out-dir", "OUT/pictures"],
])
def test_a_full_disk_is_one_line_for_every_command(words, tmp_path, monkeypatch, capsys):
    from tests.test_adversarial import _record_with_epochs

    record = tmp_path / "r.json"
    record.write_text(json.dumps(_record_with_epochs()))
    _full_disk(monkeypatch)
    argv = [str(record) if w == "RECORD" else w.replace("OUT", str(tmp_path / "out")) for w in words]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("speedrun: error:")]) == 1


def test_a_full_disk_after_the_range_test_is_one_line(tmp_path, monkeypatch, make_synthetic_cifar10):
    from speedrun.bench.harness import HarnessOptions
    from speedrun.bench.lr_find import run_lr_find
    from speedrun.errors import SpeedrunError
    from speedrun.training.range_test import LRFinderConfig
    from tests.bench.test_harness import TINY_RECIPE

    _full_disk(monkeypatch)
    with pytest.raises(SpeedrunError, match="No space left on device"):
        run_lr_find(TINY_RECIPE, HarnessOptions(out=str(tmp_path / "lr"), device="cpu"),
                    LRFinderConfig(num_steps=3), data=make_synthetic_cifar10(train=128, test=32), log=lambda _: None)


@pytest.mark.parametrize(("words", "flag"), [(["profile", *NO_DATA], "--trace"), (["profile", *NO_DATA], "--markdown"),
                                             (["leaderboard", "RECORD"], "--out"), (["schedule"], "--plot"),
                                             (["export", "RECORD"], "--out")])
def test_a_folder_where_a_file_goes_is_refused_and_kept(words, flag, tmp_path, capsys):
    record = tmp_path / "r.json"
    record.write_text(json.dumps(minimal_record()))
    folder = tmp_path / "adir"
    folder.mkdir()
    argv = [str(record) if w == "RECORD" else w for w in words]
    assert main([*argv, flag, str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert folder.is_dir() and list(folder.iterdir()) == []
