"""Find, read and cache CIFAR-10: every form it comes in, checked on the way in (:mod:`~speedrun.data.cifar10`).

Why this module exists: a benchmark's accuracy figure is only as honest as the data under it,
so every copy is checked (counts, shapes, dtype, label range, archive MD5) and labelled with
the copy it came from (``source``), and every problem becomes a one-line
:class:`~speedrun.errors.DatasetError` that names the fix instead of a traceback.

Accepted forms, in the order a data folder is searched (the first one present wins):

1. ``cifar10_uint8.npz``      the cache this loader writes after reading 2. or 3. (fastest)
2. ``cifar-10-python.tar.gz`` the official archive, MD5-checked, read in memory
3. ``cifar-10-batches-py/``   the archive's extracted folder (data_batch_1..5, test_batch)
4. ``cifar10_jpegq75.npz``    the offline JPEG-q75 copy that ``shared/data/cifar10/unpack.py`` writes

The official data come before the lossy offline copy so a real copy is never shadowed.
``data_dir`` may also name one of these files (or any ``.npz`` with ``train_images,
train_labels, test_images, test_labels``) or the extracted folder directly; then exactly that
is read and no cache is written. When nothing is found and ``download=True``, the official archive is
downloaded into the data folder (standard library only) and its MD5 checked before it is kept.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.util
import io
import os
import pickle
import sys
import tarfile
import urllib.request
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from speedrun.data.cifar10 import (
    ARCHIVE_NAME,
    ARRAY_KEYS,
    CACHE_NAME,
    DATA_DIR_ENV,
    FOLDER_NAME,
    JPEG_COPY_NAME,
    JPEG_PACK_NAME,
    OFFICIAL_COUNTS,
    OFFICIAL_MD5,
    OFFICIAL_URL,
    SEARCHED_NAMES,
    SOURCE_JPEG_COPY,
    SOURCE_OFFICIAL,
    TEST_BATCH,
    TRAIN_BATCHES,
    Cifar10,
    validated,
)
from speedrun.errors import DatasetError
from speedrun.outputs import write_atomically

DOWNLOAD_TIMEOUT_S = 60  # per read: a stalled server fails instead of hanging the run


def default_data_dir() -> Path:
    """Where data is looked for without ``--data-dir``: ``$SPEEDRUN_DATA_DIR``, else ``~/.cache/speedrun``."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "speedrun"


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    expected_counts: tuple[int, int] | None = OFFICIAL_COUNTS,
    expected_md5: str | None = OFFICIAL_MD5,
) -> Cifar10:
    """Find CIFAR-10 in ``data_dir`` (see the module docstring for the forms and their order),
    check it and return it; raise :class:`DatasetError` with the fix when that is not possible.

    ``expected_counts`` (train, test) and ``expected_md5`` (of the archive) can be None to
    skip those checks, e.g. for small synthetic sets in tests.
    """
    try:
        path = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    except RuntimeError:                  # ~user of a user this machine does not have
        raise DatasetError(f"--data-dir {data_dir}: no such home folder; give the folder's full path") from None
    try:
        return _load(path, download, expected_counts, expected_md5)
    except OSError as error:              # a name too long, a folder we may not read, a disk error...
        shown = str(path) if len(str(path)) <= 80 else f"{str(path)[:60]}..."
        raise DatasetError(f"--data-dir {shown}: cannot read there ({error.strerror or error}); point --data-dir "
                           f"at the folder or file holding CIFAR-10") from None


def _load(path: Path, download: bool, expected_counts: tuple[int, int] | None, expected_md5: str | None) -> Cifar10:
    if path.is_file():
        return validated(_read_file(path, expected_md5), expected_counts)
    if path.is_dir() and _is_batches_folder(path):
        return validated(_read_batches_folder(path), expected_counts)
    if path.is_dir():
        found = _search_folder(path, expected_md5, expected_counts)
        if found is not None:
            return found
    if not download:
        raise DatasetError(_not_found_message(path))
    _download_archive(path, expected_md5)
    found = _search_folder(path, expected_md5, expected_counts)
    if found is None:  # the download claimed success but left no archive behind
        raise DatasetError(f"downloaded CIFAR-10 but found no {ARCHIVE_NAME} in {path}; {_manual_fix(path)}")
    return found


def _search_folder(folder: Path, expected_md5: str | None,
                   expected_counts: tuple[int, int] | None) -> Cifar10 | None:
    """Read the first accepted form present in ``folder``, caching official data once."""
    cache = folder / CACHE_NAME
    if cache.is_file():
        return validated(_read_npz(cache), expected_counts)
    archive = folder / ARCHIVE_NAME
    batches = folder / FOLDER_NAME
    if archive.is_file() or batches.is_dir():
        raw = _read_archive(archive, expected_md5) if archive.is_file() else _read_batches_folder(batches)
        dataset = validated(raw, expected_counts)
        _write_cache(dataset, cache)
        return dataset
    jpeg_copy = folder / JPEG_COPY_NAME
    if jpeg_copy.is_file():
        return validated(_read_npz(jpeg_copy), expected_counts)
    return None


def _read_file(path: Path, expected_md5: str | None) -> Cifar10:
    name = path.name.lower()
    if name.endswith(".npz"):
        return _read_npz(path)
    if name.endswith((".tar.gz", ".tgz")):
        return _read_archive(path, expected_md5)
    raise DatasetError(
        f"{path} is not a CIFAR-10 file this loader reads: expected a .npz with {', '.join(ARRAY_KEYS)}, "
        f"or {ARCHIVE_NAME}; pass --data-dir the folder holding one of {SEARCHED_NAMES}")


# --- readers: each returns an unchecked Cifar10; validated() does the checking ---------------

def _read_npz(path: Path) -> Cifar10:
    """An .npz of the four arrays: this loader's cache, unpack.py's JPEG copy, or a user's own."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in ARRAY_KEYS if key not in npz.files]
            if missing:
                raise DatasetError(
                    f"{path} lacks the arrays {', '.join(missing)} (found {', '.join(npz.files) or 'none'}); "
                    f"expected {', '.join(ARRAY_KEYS)} as written by unpack.py or this loader's cache")
            arrays = {key: npz[key] for key in ARRAY_KEYS}
            source = _npz_source(path, npz)
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise DatasetError(
            f"{path} is truncated or not a readable .npz ({type(error).__name__}: {_one_line(error)}); "
            f"delete it and recreate it (re-run unpack.py, or reload from {ARCHIVE_NAME} to rebuild the cache)"
        ) from None
    return Cifar10(**arrays, source=source, origin=str(path))


def _npz_source(path: Path, npz: Any) -> str:
    """The copy an .npz holds: recorded by the cache, recognised for unpack.py's output, else unverified."""
    if "source" in npz.files:
        return str(npz["source"])
    if "jpegq75" in path.name.lower() or "exact_train_index" in npz.files:
        return SOURCE_JPEG_COPY
    return f"CIFAR-10 (unverified copy: {path.name})"


def _read_archive(path: Path, expected_md5: str | None) -> Cifar10:
    """The official tar.gz, read in memory after its MD5 is checked (a truncated download fails here)."""
    if expected_md5 is not None:
        actual = _md5_of(path)
        if actual != expected_md5.lower():
            raise DatasetError(
                f"{path} has MD5 {actual}, expected {expected_md5}: the archive is truncated or not the "
                f"official CIFAR-10; delete it and download it again from {OFFICIAL_URL}")
    batches: dict[str, dict[bytes, Any]] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in (*TRAIN_BATCHES, TEST_BATCH):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        batches[name] = _unpickle_batch(handle.read(), f"{path}:{member.name}")
    except DatasetError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(
            f"{path} is truncated or not a tar.gz ({type(error).__name__}: {_one_line(error)}); "
            f"delete it and download it again from {OFFICIAL_URL}") from None
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if name not in batches]
    if missing:
        raise DatasetError(
            f"{path} lacks the batches {', '.join(missing)}; expected {FOLDER_NAME}/data_batch_1..5 and "
            f"test_batch inside; delete it and download it again from {OFFICIAL_URL}")
    return _from_batches(batches, SOURCE_OFFICIAL, path)


def _read_batches_folder(folder: Path) -> Cifar10:
    """The extracted ``cifar-10-batches-py/`` folder (no MD5 exists for it, so only shapes are checked)."""
    batches = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        file = folder / name
        try:
            payload = file.read_bytes()
        except OSError as error:
            raise DatasetError(
                f"cannot read {file} ({type(error).__name__}: {_one_line(error)}); expected data_batch_1..5 "
                f"and test_batch in {folder}; extract {ARCHIVE_NAME} there again") from None
        batches[name] = _unpickle_batch(payload, str(file))
    return _from_batches(batches, SOURCE_OFFICIAL, folder)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds (dicts, lists, bytes, numpy arrays), never code."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
          for name in ("_reconstruct", "scalar")),
        *((module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle_batch(payload: bytes, where: str) -> dict[bytes, Any]:
    try:
        batch = _BatchUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except Exception as error:  # a bad pickle can raise nearly anything; all mean "corrupt file"
        raise DatasetError(
            f"{where} is not a readable CIFAR-10 batch pickle ({type(error).__name__}: {_one_line(error)}); "
            f"replace it with the official file from {OFFICIAL_URL}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(
            f"{where} is not a CIFAR-10 batch: expected a dict with b'data' (N, 3072) and b'labels'; "
            f"replace it with the official file from {OFFICIAL_URL}")
    return batch


def _from_batches(batches: dict[str, dict[bytes, Any]], source: str, origin: Path) -> Cifar10:
    train_images, train_labels = zip(*(_batch_arrays(batches[name], f"{origin}:{name}") for name in TRAIN_BATCHES))
    test_images, test_labels = _batch_arrays(batches[TEST_BATCH], f"{origin}:{TEST_BATCH}")
    return Cifar10(np.concatenate(train_images), np.concatenate(train_labels),
                   test_images, test_labels, source=source, origin=str(origin))


def _batch_arrays(batch: dict[bytes, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch's (N, 3072) CHW rows as (N, 32, 32, 3) HWC images, plus its labels."""
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"{where} holds b'data' of shape {data.shape}, expected (N, 3072) rows of CHW pixels; "
            f"replace it with the official file from {OFFICIAL_URL}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


# --- cache, download, messages ---------------------------------------------------------------

def _write_cache(dataset: Cifar10, cache: Path) -> None:
    """Save the checked arrays once so later loads skip the archive; atomic, so never half-written.

    A folder we may not write (a read-only shared copy) only costs speed, so that is a warning.
    """
    def save(file) -> None:
        np.savez(file, train_images=dataset.train_images, train_labels=dataset.train_labels,
                 test_images=dataset.test_images, test_labels=dataset.test_labels, source=np.array(dataset.source))

    try:
        write_atomically(cache, save, binary=True)
    except OSError as error:
        warnings.warn(f"could not write the CIFAR-10 cache {cache} ({_one_line(error)}); "
                      f"later loads will read {dataset.origin} again", stacklevel=3)


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise DatasetError(f"cannot read {path} ({type(error).__name__}: {_one_line(error)}); "
                           f"check its permissions or download it again from {OFFICIAL_URL}") from None
    return digest.hexdigest()


def _download_archive(folder: Path, expected_md5: str | None) -> None:
    """Fetch the official archive with the standard library (torchvision's wheels are built for one
    torch, so depending on them breaks installs), into a ``.part`` file that only a complete download
    with the right MD5 replaces the archive with: a cut or corrupt download never leaves one behind."""
    partial = folder / f"{ARCHIVE_NAME}.part"
    digest = hashlib.md5(usedforsecurity=False)
    print(f"downloading CIFAR-10 from {OFFICIAL_URL} into {folder} (about 163 MB)", file=sys.stderr, flush=True)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(OFFICIAL_URL, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as file:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                file.write(block)
        if expected_md5 is not None and digest.hexdigest() != expected_md5:
            raise DatasetError(f"the download from {OFFICIAL_URL} has MD5 {digest.hexdigest()}, expected {expected_md5} "
                               f"(cut short or changed on the way); {_manual_fix(folder)}")
        os.replace(partial, folder / ARCHIVE_NAME)
    except (OSError, ValueError, http.client.HTTPException) as error:  # network, HTTP or disk: all need the manual route
        raise DatasetError(
            f"downloading CIFAR-10 into {folder} failed ({type(error).__name__}: {_one_line(error)}); "
            f"{_manual_fix(folder)}") from None
    finally:  # also on a wrong MD5 and Ctrl-C: only a whole, checked archive stays, and a folder made for nothing goes
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
            if created and not (folder / ARCHIVE_NAME).exists():
                folder.rmdir()


def _not_found_message(path: Path) -> str:
    where = f"data folder {path} does not exist" if not path.exists() else f"no CIFAR-10 found in {path}"
    return f"{where} (looked for {SEARCHED_NAMES}) and download is off; {_manual_fix(path)}"


def _manual_fix(path: Path) -> str:
    return (f"put {ARCHIVE_NAME} (from {OFFICIAL_URL}) or its extracted {FOLDER_NAME}/ there, "
            f"or point --data-dir / ${DATA_DIR_ENV} at the folder holding it, "
            f"or {_offline_hint(path)}")


def _offline_hint(path: Path) -> str:
    """How to decode the offline copy; into ``path`` unless that is the (read-only) packed copy's
    own folder, whose decoded output belongs in the default data folder instead."""
    beside = path / "unpack.py"
    script = beside if beside.is_file() else _offline_unpack_script()
    shown = str(script) if script is not None else "shared/data/cifar10/unpack.py"
    holds_pack = (path / JPEG_PACK_NAME).is_file()
    writable = not path.exists() or os.access(path, os.W_OK)
    fallback = default_data_dir() if default_data_dir() != path else Path.home() / ".cache" / "speedrun"
    target = path if writable and not holds_pack else fallback
    packed_here = f" ({JPEG_PACK_NAME}, found here)" if holds_pack else ""
    pillow = "" if importlib.util.find_spec("PIL") else "python3 -m pip install pillow && "
    return f"decode the offline JPEG-q75 copy{packed_here} with: {pillow}python3 {shown} {target}"


def _offline_unpack_script() -> Path | None:
    """The offline copy's decoder if it sits beside this checkout (``<repo>/../shared``), for the hint."""
    candidate = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10" / "unpack.py"
    return candidate if candidate.is_file() else None




def _is_batches_folder(folder: Path) -> bool:
    return (folder / TRAIN_BATCHES[0]).is_file() or (folder / TEST_BATCH).is_file()


def _one_line(error: BaseException) -> str:
    """An exception's text folded to one line, since the CLI prints messages as one line."""
    return " ".join(str(error).split()) or "no details"
