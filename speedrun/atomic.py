"""Atomic file writes: a temp file beside the target, flushed to disk, then renamed over it.

A crash or an error mid-write leaves the old file (or none), never half of a new one; every
file speedrun writes (records, caches, tables, pictures) goes through here.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def write_atomically(path: str | os.PathLike, write: Callable[[IO[Any]], None], *, binary: bool) -> Path:
    """Call ``write(file)`` on a temp file in ``path``'s folder, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())    # mkstemp makes 0600; a written file gets the user's usual mode
        mode_kwargs: dict[str, Any] = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, "wb" if binary else "w", **mode_kwargs) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    return write_atomically(path, lambda f: f.write(text), binary=False)
