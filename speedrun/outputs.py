"""Every file speedrun writes: atomically, never over an existing file unless forced, PNG or CSV.

Atomic: a temp file beside the target, flushed to disk, then renamed over it, so a crash or an
error mid-write leaves the old file (or none), never half of a new one; the file gets the
user's usual mode. Records, caches, tables and pictures all go through :func:`write_atomically`.
A picture needs matplotlib, which is optional: without it (or for a ``.csv`` path) the same data
is written as CSV, so the commands work on a bare install. Figures use matplotlib's object API
on the Agg canvas (no pyplot, no global state), saved by :func:`write_figure` only.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from speedrun.errors import SpeedrunError


def write_atomically(path: str | os.PathLike, write: Callable[[IO[Any]], object], *, binary: bool,
                     exclusive: bool = False) -> Path:
    """Call ``write(file)`` on a temp file in ``path``'s folder, then rename it to ``path``.

    ``exclusive``: publish only if ``path`` does not exist yet (FileExistsError otherwise), so a
    file another process wrote in the meantime is never replaced; the check and the publish are
    one step (a hard link), not a race.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())    # mkstemp makes 0600; a written file gets the user's usual mode
        mode_kwargs: dict[str, Any] = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, "wb" if binary else "w", **mode_kwargs) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)          # fails with FileExistsError if the name is taken
            os.unlink(tmp)
        else:
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


def write_text_atomically(path: str | os.PathLike, text: str, *, exclusive: bool = False) -> Path:
    return write_atomically(path, lambda f: f.write(text), binary=False, exclusive=exclusive)


def check_writable_folder(folder: Path, *, flag: str) -> None:
    """Refuse, before any work, a folder that cannot be made or written: a file in its place or
    above it, or no permission. Nothing is created."""
    for ancestor in [folder, *folder.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                what = "is a file" if ancestor == folder else f"lies under {ancestor}, which is a file"
                raise SpeedrunError(f"{flag} {folder} {what}; give a folder (or a new .json path)")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise SpeedrunError(f"{flag} {folder}: {ancestor} is not writable; choose a folder you can write to")
            return


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def check_new_path(path: str | os.PathLike, *, force: bool | None, flag: str) -> Path:
    """``path`` as a Path, after refusing to replace an existing file unless ``force``.

    ``force=None`` is for commands that offer no ``--force``: they never replace a file, which
    protects inputs (an ``--out`` pointing at a record would destroy the evidence it summarises).
    """
    path = Path(path)
    if path.exists() and not force:
        fix = (f"choose another {flag} path (speedrun never overwrites files)" if force is None
               else f"pass --force to replace it or choose a new {flag} path")
        raise SpeedrunError(f"{path} already exists; {fix}")
    if path.is_dir():
        raise SpeedrunError(f"{path} is a folder; give {flag} a file name")
    if not path.parent.is_dir():
        raise SpeedrunError(f"{path.parent} is not a folder; create it or choose another {flag} path")
    return path


def write_new_text_file(path: str | os.PathLike, text: str, *, flag: str = "--out") -> Path:
    """Write ``text`` to a new file, atomically; an existing file is never replaced."""
    return write_text_atomically(check_new_path(path, force=None, flag=flag), text)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with ``header``; None cells are left empty and floats keep full precision (repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    text = csv_text(header, rows)
    return write_atomically(path, lambda f: f.write(text), binary=False)


def write_figure(path: Path, draw: Callable[[Any], None], *, size: tuple[float, float] = (8, 5)) -> Path:
    """Draw on a fresh Agg figure with ``draw(fig)`` and save it as PNG at ``path``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SpeedrunError("drawing a PNG needs matplotlib: pip install 'speedrun[plot]' "
                            "(or give a .csv path)") from None
    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig)
    return write_atomically(path, lambda f: fig.savefig(f, format="png"), binary=True)
