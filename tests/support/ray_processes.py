"""Ray processes started under one ``RAY_TMPDIR``: found, awaited and killed by their environment
(a Ray worker renames itself, ``ray::IDLE``, but keeps the environment it was started with)."""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path


def ray_root() -> Path:
    """A fresh, short ``RAY_TMPDIR`` (Ray's socket paths must stay under about 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="srt", dir="/tmp"))


def ray_pids(root: Path) -> list[int]:
    """Live processes (zombies left out) started with ``RAY_TMPDIR=root``."""
    mark = f"RAY_TMPDIR={root}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in (entry / "environ").read_bytes() + b"\0" and " Z " not in (entry / "stat").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_gone(root: Path, timeout: float = 30.0) -> list[int]:
    """The processes still alive after up to ``timeout`` seconds (empty: all gone)."""
    deadline = time.monotonic() + timeout
    while (left := ray_pids(root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def kill_all(root: Path) -> None:
    for pid in ray_pids(root):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(root, 10)
