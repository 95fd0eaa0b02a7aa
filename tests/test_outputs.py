"""Atomic writes: all or nothing, and the user's normal file mode (not mkstemp's 0600)."""
import os
import stat

import pytest

from speedrun.outputs import format_duration, write_atomically, write_text_atomically


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_written_file_gets_the_mode_the_umask_gives(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = write_text_atomically(tmp_path / "r.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = write_text_atomically(tmp_path / "r.json", "old")

    def explode(f):
        f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(path, explode, binary=False)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize(("seconds", "shown"), [(0.4, "0s"), (59.4, "59s"), (59.6, "1m00s"), (187, "3m07s"),
                                               (3599.4, "59m59s"), (3600, "1h00m"), (7530, "2h05m")])
def test_a_duration_reads_the_same_in_every_progress_line(seconds, shown):
    assert format_duration(seconds) == shown
