"""Shared test fixtures: the real (offline) CIFAR-10 and tiny synthetic CIFAR-10 look-alikes.

- ``real_cifar10`` (session): the offline JPEG-q75 copy of CIFAR-10 as a checked ``Cifar10``.
  It is found beside the repository as ``<repo>/../shared/data/cifar10/`` (CI clones the repo
  next to ``shared/``), decoded once with its own ``unpack.py`` into ``$SPEEDRUN_TEST_CACHE``
  (default ``~/.cache/speedrun-test/``) and reused from there. Skipped when the shared folder
  or Pillow is missing.
- ``synthetic_cifar10``: 64 train / 32 test images whose class is a coloured square, so a
  small net learns it in a few CPU steps.
- ``make_synthetic_cifar10``: the factory behind it, ``make(train=64, test=32, seed=0)``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from speedrun.data.cifar10 import Cifar10
from speedrun.data.loading import load_cifar10

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10"
DECODED_NAME = "cifar10_jpegq75.npz"

# One distinct, well separated RGB colour per class for the synthetic data.
_CLASS_COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (250, 190, 190), (0, 0, 128),
], dtype=np.int16)


def _test_cache_dir() -> Path:
    configured = os.environ.get("SPEEDRUN_TEST_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "speedrun-test"


def _decode_offline_copy(unpack_script: Path, cache_dir: Path) -> Path:
    """Run unpack.py into a private temp folder, then move the result into place atomically,
    so concurrent test sessions never see (or write) a half-written file."""
    target = cache_dir / DECODED_NAME
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".decode-") as scratch:
        command = [sys.executable, str(unpack_script), scratch]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0 and "decoded differently" in result.stderr:
            # Another Pillow/libjpeg may change a few pixels by one level: fine for tests.
            warnings.warn(f"offline CIFAR-10 decoded with a different JPEG decoder: {result.stderr.strip()}")
            result = subprocess.run(command + ["--allow-mismatch"], capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"{unpack_script} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
        os.replace(Path(scratch) / DECODED_NAME, target)
    return target


@pytest.fixture(scope="session")
def real_cifar10() -> Cifar10:
    """The real CIFAR-10 images as the offline JPEG-q75 copy (source names the copy)."""
    unpack_script = SHARED_CIFAR10 / "unpack.py"
    if not unpack_script.is_file():
        pytest.skip(f"offline CIFAR-10 not found at {SHARED_CIFAR10}")
    pytest.importorskip("PIL", reason="Pillow is needed to decode the offline CIFAR-10 copy")
    decoded = _test_cache_dir() / DECODED_NAME
    if not decoded.is_file():
        decoded = _decode_offline_copy(unpack_script, decoded.parent)
    return load_cifar10(decoded)


def make_synthetic(train: int = 64, test: int = 32, seed: int = 0) -> Cifar10:
    """Tiny CIFAR-shaped data with learnable structure: noise plus a class-coloured 12x12 square.

    Labels cycle through all ten classes (then shuffled) so every class appears when n >= 10.
    """
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
        images = rng.integers(0, 96, size=(n, 32, 32, 3), dtype=np.int16)
        offsets = rng.integers(0, 32 - 12, size=(n, 2))
        for image, label, (row, col) in zip(images, labels, offsets):
            image[row:row + 12, col:col + 12] = _CLASS_COLOURS[label]
        return images.astype(np.uint8), labels

    train_images, train_labels = split(train)
    test_images, test_labels = split(test)
    return Cifar10(train_images, train_labels, test_images, test_labels,
                   source="synthetic", origin=f"<synthetic seed={seed}>")


@pytest.fixture
def make_synthetic_cifar10() -> Callable[..., Cifar10]:
    """Factory ``make(train=64, test=32, seed=0) -> Cifar10`` for tests needing other sizes."""
    return make_synthetic


@pytest.fixture
def synthetic_cifar10() -> Cifar10:
    """64 train / 32 test synthetic images, deterministic (seed 0)."""
    return make_synthetic()
