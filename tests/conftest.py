"""Shared test fixtures, and the one rule for GPU tests.

- Tests marked ``gpu`` are skipped where CUDA is not available (one collection hook, below).

- ``real_cifar10`` (session): the offline JPEG-q75 copy of CIFAR-10 as a checked ``Cifar10``.
  ``$SPEEDRUN_TEST_CIFAR10``, when set, names the decoded copy (a ``.npz``) to use as it is (the
  GPU plan sets it: ``../shared`` does not travel to the GPU machine); a missing file is an error.
  Otherwise it is found beside the repository as ``<repo>/../shared/data/cifar10/`` (CI clones
  the repo next to ``shared/``), decoded once with its own ``unpack.py`` into
  ``$SPEEDRUN_TEST_CACHE`` (default ``~/.cache/speedrun-test/``) and reused from there. Skipped
  when the shared folder or Pillow is missing.
- ``synthetic_cifar10``: 64 train / 32 test images whose class is a coloured square, so a
  small net learns it in a few CPU steps.
- ``make_synthetic_cifar10``: the factory behind it, ``make(train=64, test=32, seed=0)``.
- ``cpu_records`` (session): real records from tiny CPU runs, for the record readers' tests.
- ``one_cpu_thread``: pin torch to one thread for a test of tiny models (use it with
  ``pytestmark = pytest.mark.usefixtures("one_cpu_thread")``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from speedrun.data.cifar10 import Cifar10
from speedrun.data.loading import load_cifar10
from tests.support.records import CpuRecords, make_cpu_records
from tests.support.synthetic import make_synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10"
DECODED_NAME = "cifar10_jpegq75.npz"
DECODED_ENV = "SPEEDRUN_TEST_CIFAR10"   # the decoded copy, named explicitly (where ../shared is not)

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
            warnings.warn(f"offline CIFAR-10 decoded with a different JPEG decoder: {result.stderr.strip()}", stacklevel=2)
            result = subprocess.run([*command, "--allow-mismatch"], capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"{unpack_script} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
        os.replace(Path(scratch) / DECODED_NAME, target)
    return target


@pytest.fixture(scope="session")
def real_cifar10() -> Cifar10:
    """The real CIFAR-10 images as the offline JPEG-q75 copy (source names the copy)."""
    configured = os.environ.get(DECODED_ENV)
    if configured:
        named = Path(configured).expanduser()
        if not named.is_file():
            pytest.fail(f"${DECODED_ENV}={configured}: no such file (it names the decoded JPEG-q75 copy, "
                        f"{DECODED_NAME})")
        return load_cifar10(named)
    unpack_script = SHARED_CIFAR10 / "unpack.py"
    if not unpack_script.is_file():
        pytest.skip(f"offline CIFAR-10 not found at {SHARED_CIFAR10}")
    pytest.importorskip("PIL", reason="Pillow is needed to decode the offline CIFAR-10 copy")
    decoded = _test_cache_dir() / DECODED_NAME
    if not decoded.is_file():
        decoded = _decode_offline_copy(unpack_script, decoded.parent)
    return load_cifar10(decoded)


@pytest.fixture
def make_synthetic_cifar10() -> Callable[..., Cifar10]:
    """Factory ``make(train=64, test=32, seed=0) -> Cifar10`` for tests needing other sizes."""
    return make_synthetic


@pytest.fixture
def synthetic_cifar10() -> Cifar10:
    """64 train / 32 test synthetic images, deterministic (seed 0)."""
    return make_synthetic()


@pytest.fixture(scope="session")
def cpu_records(tmp_path_factory: pytest.TempPathFactory) -> CpuRecords:
    """The real CPU records, trained once per session however many modules use them."""
    return make_cpu_records(tmp_path_factory.getbasetemp() / "cpu-records")


@pytest.fixture
def one_cpu_thread():
    """Tiny models gain nothing from two threads, and on a busy 2-core box two threads spin
    against other processes and run 5-10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked ``gpu`` when CUDA is not available: the one place this rule lives."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never reach the internet: an http(s) download fails at once, as it does offline (a test
    that downloads serves its file from a file:// address)."""
    real = urllib.request.urlopen

    def refuse(url, *args, **kwargs):
        if str(getattr(url, "full_url", url)).startswith(("http://", "https://")):
            raise urllib.error.URLError("the tests do not reach the network")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
