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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:80]}.", suffix=".tmp", dir=path.parent)
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


NAME_MAX = 255      # bytes in one name (Linux, macOS)
PATH_MAX = 4096     # bytes in a whole path


def check_output(path: str | os.PathLike, *, flag: str, force: bool | None = None, folder: bool = False) -> Path:
    """``path`` as a Path, after refusing, before any work, what could not be written there:
    an empty or too-long name, a dangling link, a file where a folder goes (or the reverse), a
    folder above it that is a file or cannot be written, and an existing file unless ``force``.

    ``force=None`` is for commands that offer no ``--force``: they never replace a file, which
    protects inputs (an ``--out`` pointing at a record would destroy the evidence it summarises).
    """
    text = os.fspath(path)
    shown = text if len(text) <= 80 else f"{text[:60]}...{text[-12:]}"
    if not text.strip():
        raise SpeedrunError(f"{flag} is empty; give a path")
    out = Path(text)
    if len(os.fsencode(text)) >= PATH_MAX or any(len(os.fsencode(part)) > NAME_MAX for part in out.parts):
        raise SpeedrunError(f"{flag} {shown}: a name in it is longer than {NAME_MAX} bytes; choose a shorter one")
    if out.is_symlink() and not out.exists():
        raise SpeedrunError(f"{flag} {shown} is a link to nothing ({os.readlink(out)}); remove it or choose another path")
    if folder:
        if out.exists() and not out.is_dir():
            raise SpeedrunError(f"{flag} {shown} is a file; give a folder")
        _check_writable(out, flag=flag, shown=shown)
        return out
    if out.is_dir():
        raise SpeedrunError(f"{flag} {shown} is a folder; give a file name")
    if out.exists() and not force:
        fix = (f"choose another {flag} path (speedrun never overwrites files)" if force is None
               else f"pass --force to replace it or choose a new {flag} path")
        raise SpeedrunError(f"{shown} already exists; {fix}")
    _check_writable(out.parent, flag=flag, shown=shown)
    return out


def _check_writable(folder: Path, *, flag: str, shown: str) -> None:
    """The folder, or the nearest one above it that exists, must be a folder we can write into
    (tried with a temporary file: permissions, read-only and immutable folders all show)."""
    for ancestor in [folder, *folder.parents]:
        if ancestor.is_symlink() and not ancestor.exists():
            raise SpeedrunError(f"{flag} {shown}: {ancestor} is a link to nothing; remove it or choose another path")
        if not ancestor.exists():
            continue
        if not ancestor.is_dir():
            raise SpeedrunError(f"{flag} {shown} lies under {ancestor}, which is a file; choose another path")
        try:
            tempfile.TemporaryFile(dir=ancestor).close()
        except OSError as error:
            raise SpeedrunError(f"{flag} {shown}: cannot write in {ancestor} ({error.strerror or error}); choose a "
                                f"folder you can write to") from None
        return


def publish(path: str | os.PathLike, write: Callable[[IO[Any]], object], *, binary: bool, replace: bool = False,
            flag: str = "--out") -> Path:
    """Write a file atomically, creating its folder; without ``replace`` only if it is still new,
    so a concurrent writer is refused rather than overwritten. Any failure (a full disk, no
    permission, a name taken meanwhile) is one line naming the file; nothing else is changed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomically(path, write, binary=binary, exclusive=not replace)
    except FileExistsError:
        raise SpeedrunError(f"{path} appeared while this command ran (another writer?); it was left as it is: "
                            f"choose another {flag} path") from None
    except OSError as error:
        raise SpeedrunError(f"could not write {path} ({error.strerror or error}); nothing was replaced: free space "
                            f"or choose another {flag} path") from None


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_new_text_file(path: str | os.PathLike, text: str, *, flag: str = "--out") -> Path:
    """Write ``text`` to a new file, atomically; an existing file is never replaced."""
    return publish(check_output(path, force=None, flag=flag), lambda f: f.write(text), binary=False, flag=flag)


def format_duration(seconds: float) -> str:
    """A duration as progress lines show it (``45s``, ``3m07s``, ``2h05m``): short, and the same in every command."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with ``header``; None cells are left empty and floats keep full precision (repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], *, replace: bool = False,
              flag: str = "--out") -> Path:
    text = csv_text(header, rows)
    return publish(path, lambda f: f.write(text), binary=False, replace=replace, flag=flag)


def write_figure(path: Path, draw: Callable[[Any], None], *, size: tuple[float, float] = (8, 5), replace: bool = False,
                 flag: str = "--out") -> Path:
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
    return publish(path, lambda f: fig.savefig(f, format="png"), binary=True, replace=replace, flag=flag)
