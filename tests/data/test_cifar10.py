"""The CIFAR-10 loader: every accepted form reads back the same arrays, every bad input is a
one-line DatasetError naming the fix, and the offline real copy has CIFAR-10's known facts."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from speedrun.data import loading
from speedrun.data.cifar10 import (
    ARCHIVE_NAME,
    CACHE_NAME,
    FOLDER_NAME,
    JPEG_COPY_NAME,
    SOURCE_JPEG_COPY,
    SOURCE_OFFICIAL,
    Cifar10,
)
from speedrun.data.loading import default_data_dir, load_cifar10
from speedrun.errors import DatasetError, SpeedrunError

SMALL = dict(expected_counts=None, expected_md5=None)


# --- writers for the accepted forms ----------------------------------------------------------

def _batches(data: Cifar10, protocol: int) -> dict[str, bytes]:
    """The dataset as official-style batch pickles: b'data' (N, 3072) CHW rows, b'labels' list."""
    def pickled(images: np.ndarray, labels: np.ndarray) -> bytes:
        rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        return pickle.dumps({b"batch_label": b"x", b"data": rows, b"labels": labels.tolist()}, protocol=protocol)

    parts = np.array_split(np.arange(len(data.train_labels)), 5)
    out = {f"data_batch_{i + 1}": pickled(data.train_images[p], data.train_labels[p]) for i, p in enumerate(parts)}
    out["test_batch"] = pickled(data.test_images, data.test_labels)
    return out


def write_folder(data: Cifar10, parent: Path, protocol: int = 2) -> Path:
    folder = parent / FOLDER_NAME
    folder.mkdir(parents=True)
    for name, payload in _batches(data, protocol).items():
        (folder / name).write_bytes(payload)
    return folder


def write_archive(data: Cifar10, parent: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> tuple[Path, str]:
    archive = parent / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in _batches(data, protocol).items():
            info = tarfile.TarInfo(f"{FOLDER_NAME}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def write_npz(path: Path, **overrides: np.ndarray) -> Path:
    arrays = dict(train_images=np.zeros((20, 32, 32, 3), np.uint8), train_labels=np.arange(20) % 10,
                  test_images=np.zeros((10, 32, 32, 3), np.uint8), test_labels=np.arange(10) % 10)
    arrays.update(overrides)
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def assert_same_arrays(loaded: Cifar10, expected: Cifar10) -> None:
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(expected, name))
    assert loaded.train_images.dtype == np.uint8 and loaded.train_images.shape[1:] == (32, 32, 3)
    assert loaded.train_labels.dtype == np.int64 and loaded.test_labels.dtype == np.int64


def load_error(*args: object, **kwargs: object) -> str:
    """The message of the DatasetError that load_cifar10 raises; it must fit the CLI's one line."""
    with pytest.raises(DatasetError) as caught:
        load_cifar10(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.__suppress_context__ or caught.value.__cause__ is None
    return message


# --- each accepted form ----------------------------------------------------------------------

def test_npz_reads_back_and_is_labelled_unverified(tmp_path, synthetic_cifar10):
    data = synthetic_cifar10
    path = write_npz(tmp_path / "mine.npz", train_images=data.train_images, train_labels=data.train_labels,
                     test_images=data.test_images, test_labels=data.test_labels)
    loaded = load_cifar10(path, **SMALL)
    assert_same_arrays(loaded, data)
    assert loaded.origin == str(path) and "unverified" in loaded.source


def test_jpeg_copy_npz_found_in_folder_and_named_as_the_copy(tmp_path, synthetic_cifar10):
    data = synthetic_cifar10
    write_npz(tmp_path / JPEG_COPY_NAME, train_images=data.train_images, train_labels=data.train_labels.astype(np.uint8),
              test_images=data.test_images, test_labels=data.test_labels.astype(np.uint8))
    loaded = load_cifar10(tmp_path, download=False, **SMALL)
    assert_same_arrays(loaded, data)
    assert loaded.source == SOURCE_JPEG_COPY
    assert not (tmp_path / CACHE_NAME).exists()  # already a fast npz: nothing to cache


def test_archive_with_matching_md5_is_read_then_cached(tmp_path, synthetic_cifar10):
    archive, md5 = write_archive(synthetic_cifar10, tmp_path)
    first = load_cifar10(tmp_path, expected_counts=(64, 32), expected_md5=md5)
    assert_same_arrays(first, synthetic_cifar10)
    assert first.source == SOURCE_OFFICIAL and first.origin == str(archive)

    archive.unlink()  # the second load must come from the cache alone
    second = load_cifar10(tmp_path, expected_counts=(64, 32), expected_md5=md5)
    assert_same_arrays(second, synthetic_cifar10)
    assert second.source == SOURCE_OFFICIAL and second.origin == str(tmp_path / CACHE_NAME)
    assert [p.name for p in tmp_path.iterdir()] == [CACHE_NAME]  # no temp files left behind


def test_extracted_folder_is_read_then_cached(tmp_path, synthetic_cifar10):
    write_folder(synthetic_cifar10, tmp_path)
    loaded = load_cifar10(tmp_path, **SMALL)
    assert_same_arrays(loaded, synthetic_cifar10)
    assert loaded.source == SOURCE_OFFICIAL
    assert_same_arrays(load_cifar10(tmp_path / CACHE_NAME, **SMALL), synthetic_cifar10)


@pytest.mark.parametrize("target", ["archive", "folder"])
def test_data_dir_may_name_the_archive_or_folder_itself(tmp_path, synthetic_cifar10, target):
    archive, md5 = write_archive(synthetic_cifar10, tmp_path)
    folder = write_folder(synthetic_cifar10, tmp_path, protocol=5)
    loaded = load_cifar10(archive if target == "archive" else folder, expected_counts=None, expected_md5=md5)
    assert_same_arrays(loaded, synthetic_cifar10)
    assert not (tmp_path / CACHE_NAME).exists()  # caching only happens when a folder is searched


def test_official_data_take_precedence_over_the_jpeg_copy(tmp_path, make_synthetic_cifar10):
    official, jpeg = make_synthetic_cifar10(seed=1), make_synthetic_cifar10(seed=2)
    write_npz(tmp_path / JPEG_COPY_NAME, train_images=jpeg.train_images, train_labels=jpeg.train_labels,
              test_images=jpeg.test_images, test_labels=jpeg.test_labels)
    write_folder(official, tmp_path)
    loaded = load_cifar10(tmp_path, **SMALL)
    assert loaded.source == SOURCE_OFFICIAL
    assert_same_arrays(loaded, official)


def test_default_data_dir_follows_the_environment(tmp_path, monkeypatch, synthetic_cifar10):
    monkeypatch.setenv("SPEEDRUN_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    write_folder(synthetic_cifar10, tmp_path)
    assert_same_arrays(load_cifar10(**SMALL), synthetic_cifar10)
    monkeypatch.delenv("SPEEDRUN_DATA_DIR")
    assert default_data_dir() == Path.home() / ".cache" / "speedrun"


def test_integer_pixels_in_range_are_converted_to_uint8(tmp_path):
    path = write_npz(tmp_path / "wide.npz", train_images=np.full((20, 32, 32, 3), 255, np.int32))
    loaded = load_cifar10(path, **SMALL)
    assert loaded.train_images.dtype == np.uint8 and loaded.train_images.max() == 255


# --- subset ----------------------------------------------------------------------------------

def test_subset_keeps_the_first_examples_in_order(synthetic_cifar10):
    small = synthetic_cifar10.subset(10, None)
    assert_same_arrays(small, Cifar10(synthetic_cifar10.train_images[:10], synthetic_cifar10.train_labels[:10],
                                      synthetic_cifar10.test_images, synthetic_cifar10.test_labels, "", ""))
    assert small.source == synthetic_cifar10.source
    assert len(synthetic_cifar10.subset(None, 5).test_labels) == 5


@pytest.mark.parametrize("train, test", [(0, None), (65, None), (None, 33), (-1, None), (None, 2.5)])
def test_subset_out_of_range_is_a_one_line_error(synthetic_cifar10, train, test):
    with pytest.raises(DatasetError, match="subset must be a whole number from 1 to") as caught:
        synthetic_cifar10.subset(train, test)
    assert "\n" not in str(caught.value)


# --- bad inputs ------------------------------------------------------------------------------

def test_missing_folder_names_the_folder_forms_and_fixes(tmp_path):
    missing = tmp_path / "nowhere"
    message = load_error(missing, download=False)
    assert f"{missing} does not exist" in message
    for expected in (CACHE_NAME, ARCHIVE_NAME, FOLDER_NAME, JPEG_COPY_NAME, "--data-dir", "SPEEDRUN_DATA_DIR", "unpack.py"):
        assert expected in message


def test_empty_folder_says_nothing_was_found_there(tmp_path):
    message = load_error(tmp_path, download=False)
    assert f"no CIFAR-10 found in {tmp_path}" in message and ARCHIVE_NAME in message and "download is off" in message


def test_folder_with_the_packed_copy_says_to_decode_it_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDRUN_DATA_DIR", str(tmp_path / "decoded"))
    (tmp_path / "cifar10_jpegq75_pack.npz.xz").write_bytes(b"packed")
    message = load_error(tmp_path, download=False)
    assert "cifar10_jpegq75_pack.npz.xz, found here" in message
    assert message.endswith(f"unpack.py {tmp_path / 'decoded'}")


def _serve(monkeypatch, url: str) -> None:
    """Point the downloader at a local file:// address: tests never touch the network."""
    monkeypatch.setattr(loading, "OFFICIAL_URL", url)


def test_download_failure_names_the_manual_fix(tmp_path, monkeypatch):
    _serve(monkeypatch, (tmp_path / "nowhere" / ARCHIVE_NAME).as_uri())
    message = load_error(tmp_path / "new", download=True)
    assert "downloading CIFAR-10" in message and "URLError" in message
    assert ARCHIVE_NAME in message and "--data-dir" in message and "unpack.py" in message
    assert not (tmp_path / "new").exists()  # neither a partial file nor the folder made for it is left


def test_downloaded_archive_is_read_and_cached_without_torchvision(tmp_path, monkeypatch, synthetic_cifar10, capsys):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # any import of it would fail
    source_dir = tmp_path / "server"
    source_dir.mkdir()
    archive, md5 = write_archive(synthetic_cifar10, source_dir)
    _serve(monkeypatch, archive.as_uri())
    target = tmp_path / "data"
    loaded = load_cifar10(target, download=True, expected_counts=(64, 32), expected_md5=md5)
    assert_same_arrays(loaded, synthetic_cifar10)
    assert sorted(path.name for path in target.iterdir()) == sorted([ARCHIVE_NAME, CACHE_NAME])
    assert f"downloading CIFAR-10 from {archive.as_uri()} into {target}" in capsys.readouterr().err


def test_a_download_with_the_wrong_md5_is_not_kept(tmp_path, monkeypatch, synthetic_cifar10):
    archive, md5 = write_archive(synthetic_cifar10, tmp_path)
    _serve(monkeypatch, archive.as_uri())
    message = load_error(tmp_path / "data", download=True, expected_counts=None, expected_md5="0" * 32)
    assert f"has MD5 {md5}, expected {'0' * 32}" in message and "unpack.py" in message
    assert not (tmp_path / "data").exists()


def test_a_download_cut_by_ctrl_c_leaves_nothing(tmp_path, monkeypatch):
    class Interrupted(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            raise KeyboardInterrupt

    monkeypatch.setattr(loading.urllib.request, "urlopen", lambda url, timeout: Interrupted())
    with pytest.raises(KeyboardInterrupt):
        load_cifar10(tmp_path / "data", download=True)
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyboardInterrupt):
        load_cifar10(tmp_path / "kept", download=True)
    assert not (tmp_path / "data").exists() and list((tmp_path / "kept").iterdir()) == []  # a folder it found stays


def test_truncated_archive_fails_its_md5(tmp_path, synthetic_cifar10):
    archive, md5 = write_archive(synthetic_cifar10, tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    message = load_error(tmp_path, expected_counts=None, expected_md5=md5)
    assert f"expected {md5}" in message and "truncated" in message and "download it again" in message


def test_truncated_archive_without_md5_is_reported_as_truncated(tmp_path, synthetic_cifar10):
    archive, _ = write_archive(synthetic_cifar10, tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    message = load_error(tmp_path, **SMALL)
    assert str(archive) in message and "truncated or not a tar.gz" in message


def test_wrong_md5_names_both_sums(tmp_path, synthetic_cifar10):
    _, md5 = write_archive(synthetic_cifar10, tmp_path)
    message = load_error(tmp_path, expected_counts=None)  # the official MD5 by default
    assert md5 in message and "c58f30108f718f92721af3b95e74349a" in message


def test_pickle_that_would_run_code_is_refused(tmp_path, synthetic_cifar10):
    folder = write_folder(synthetic_cifar10, tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps(os.system))  # a reference to code, not data
    message = load_error(tmp_path, **SMALL)
    assert "test_batch is not a readable CIFAR-10 batch pickle" in message and "refusing" in message


def test_garbage_batch_file_is_reported(tmp_path, synthetic_cifar10):
    folder = write_folder(synthetic_cifar10, tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x04not a pickle at all")
    assert "data_batch_3 is not a readable CIFAR-10 batch pickle" in load_error(tmp_path, **SMALL)


@pytest.mark.parametrize("overrides, expected", [
    (dict(train_images=np.zeros((20, 32, 32), np.uint8)), "expected (N, 32, 32, 3)"),
    (dict(train_images=np.zeros((20, 3, 32, 32), np.uint8)), "looks like CHW"),
    (dict(test_images=np.zeros((10, 32, 32, 3), np.float32)), "expected uint8 pixels"),
    (dict(train_images=np.full((20, 32, 32, 3), 256, np.int32)), "expected uint8 pixels"),
    (dict(train_labels=np.arange(20) % 10 + 1), "range from 1 to 10, expected class ids 0..9"),
    (dict(test_labels=np.full(10, -1)), "expected class ids 0..9"),
    (dict(test_labels=np.zeros(9, np.int64)), "10 test images but 9 test labels"),
    (dict(train_labels=None), "lacks the arrays train_labels"),
])
def test_malformed_arrays_name_what_was_expected(tmp_path, overrides, expected):
    path = write_npz(tmp_path / "bad.npz", **overrides)
    message = load_error(path, **SMALL)
    assert expected in message and str(path) in message


def test_wrong_counts_name_both_counts(tmp_path):
    path = write_npz(tmp_path / JPEG_COPY_NAME)
    message = load_error(tmp_path, download=False)  # the official 50000/10000 by default
    assert "20 train / 10 test images, expected 50000 / 10000" in message and str(path) in message


def test_truncated_npz_is_reported(tmp_path, synthetic_cifar10):
    data = synthetic_cifar10
    path = write_npz(tmp_path / "cut.npz", train_images=data.train_images, train_labels=data.train_labels,
                     test_images=data.test_images, test_labels=data.test_labels)
    path.write_bytes(path.read_bytes()[:5000])
    message = load_error(path, **SMALL)
    assert f"{path} is truncated or not a readable .npz" in message and "recreate" in message


def test_unknown_file_kind_is_refused(tmp_path):
    path = tmp_path / "cifar.zip"
    path.write_bytes(b"zip")
    assert "is not a CIFAR-10 file this loader reads" in load_error(path)


def test_dataset_errors_are_cli_errors_with_exit_code_2(tmp_path):
    with pytest.raises(SpeedrunError) as caught:
        load_cifar10(tmp_path, download=False)
    assert caught.value.exit_code == 2 and len(str(caught.value).splitlines()) == 1


# --- the real (offline) data -----------------------------------------------------------------

def test_real_data_has_cifar10s_counts_classes_and_first_labels(real_cifar10):
    data = real_cifar10
    assert data.train_images.shape == (50000, 32, 32, 3) and data.test_images.shape == (10000, 32, 32, 3)
    assert data.train_images.dtype == np.uint8
    assert np.bincount(data.train_labels, minlength=10).tolist() == [5000] * 10
    assert np.bincount(data.test_labels, minlength=10).tolist() == [1000] * 10
    assert data.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert data.source == SOURCE_JPEG_COPY == "CIFAR-10 (JPEG-q75 copy)"


def test_the_offline_hint_installs_pillow_where_it_is_missing(tmp_path, monkeypatch):
    """A fresh environment has numpy (a dependency) but not Pillow, which the decoder also needs."""
    real_find_spec = loading.importlib.util.find_spec
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None if name == "PIL" else real_find_spec(name))
    assert "with: python3 -m pip install pillow && python3 " in load_error(tmp_path, download=False)
    monkeypatch.setattr(loading.importlib.util, "find_spec", real_find_spec)
    assert "pip install pillow" not in load_error(tmp_path, download=False)
