"""Writing command output to a file: atomically, and never over an existing file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from speedrun.errors import SpeedrunError


def write_new_text_file(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a new file via a temp file and rename; refuse to replace anything.

    Refusing (rather than overwriting) protects inputs: ``--out`` pointing at a record would
    otherwise destroy the evidence it summarises.
    """
    path = Path(path)
    if path.exists():
        raise SpeedrunError(f"{path} already exists; choose another --out path (speedrun never overwrites files)")
    if not path.parent.is_dir():
        raise SpeedrunError(f"{path.parent} is not a folder; create it or choose another --out path")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
