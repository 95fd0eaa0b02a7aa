"""Writing command output to a file: atomically, and never over an existing file."""
from __future__ import annotations

import os
from pathlib import Path

from speedrun.atomic import write_text_atomically
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
    write_text_atomically(path, text)
    return path
