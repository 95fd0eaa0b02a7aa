"""CIFAR-10 as checked uint8 arrays: the dataset type, its constants, and the checks every copy passes.

Why: a benchmark's accuracy figure is only as honest as the data under it, so every copy is
checked (counts, shapes, dtype, label range) and labelled with the copy it came from
(``source``); every problem is a one-line :class:`~speedrun.errors.DatasetError` that names the
fix. Finding and reading the files is :mod:`speedrun.data.loading`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from speedrun.errors import DatasetError

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
SOURCE_OFFICIAL = "CIFAR-10"
SOURCE_JPEG_COPY = "CIFAR-10 (JPEG-q75 copy)"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TRAIN_IMAGES, CIFAR10_TEST_IMAGES = 50000, 10000   # the official split
OFFICIAL_COUNTS = (CIFAR10_TRAIN_IMAGES, CIFAR10_TEST_IMAGES)

CACHE_NAME = "cifar10_uint8.npz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
JPEG_COPY_NAME = "cifar10_jpegq75.npz"
JPEG_PACK_NAME = "cifar10_jpegq75_pack.npz.xz"
DATA_DIR_ENV = "SPEEDRUN_DATA_DIR"

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
ARRAY_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
IMAGE_SHAPE = (32, 32, 3)
SEARCHED_NAMES = f"{CACHE_NAME}, {ARCHIVE_NAME}, {FOLDER_NAME}/, {JPEG_COPY_NAME}"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Cifar10:
    """The checked dataset: uint8 (N, 32, 32, 3) HWC RGB images and int64 (N,) labels in 0..9.

    ``source`` names the copy (results on the JPEG copy are not CIFAR-10 figures) and
    ``origin`` the path it was read from, so a record can say what it measured.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    origin: str

    def subset(self, train: int | None, test: int | None) -> Cifar10:
        """First ``train``/``test`` examples in their original order (None keeps a split whole).

        First-N rather than random so a subset run is reproducible and comparable across runs.
        """
        n_train = checked_subset_size("--train-subset", train, len(self.train_labels))
        n_test = checked_subset_size("--test-subset", test, len(self.test_labels))
        return dataclasses.replace(
            self,
            train_images=self.train_images[:n_train],
            train_labels=self.train_labels[:n_train],
            test_images=self.test_images[:n_test],
            test_labels=self.test_labels[:n_test],
        )

    def checksums(self) -> dict[str, str]:
        """sha256 of each array's raw bytes (C order), the form ``unpack.py`` checks the JPEG copy by.

        A record carries them so two runs can be shown to have used the same pixels (another
        JPEG decoder can change a few of the copy's pixels by one level).
        """
        arrays = {"train_images": self.train_images, "train_labels": self.train_labels,
                  "test_images": self.test_images, "test_labels": self.test_labels}
        return {name: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for name, a in arrays.items()}

    def __repr__(self) -> str:
        return (f"Cifar10(train={len(self.train_labels)}, test={len(self.test_labels)}, "
                f"source={self.source!r}, origin={self.origin!r})")


def validated(raw: Cifar10, expected_counts: tuple[int, int] | None) -> Cifar10:
    """Check shapes, dtypes, label range and counts; return uint8 images and int64 labels."""
    fix = fix_for(raw.origin)
    splits = {}
    for split in ("train", "test"):
        images = _checked_images(getattr(raw, f"{split}_images"), f"{split}_images", raw.origin, fix)
        labels = _checked_labels(getattr(raw, f"{split}_labels"), f"{split}_labels", raw.origin, fix)
        if len(images) != len(labels):
            raise DatasetError(
                f"{raw.origin} has {len(images)} {split} images but {len(labels)} {split} labels; "
                f"they must match one to one; {fix}")
        splits[split] = (images, labels)
    counts = (len(splits["train"][1]), len(splits["test"][1]))
    if expected_counts is not None and counts != tuple(expected_counts):
        raise DatasetError(
            f"{raw.origin} has {counts[0]} train / {counts[1]} test images, expected "
            f"{expected_counts[0]} / {expected_counts[1]}: an incomplete or different dataset; {fix}")
    return Cifar10(*splits["train"], *splits["test"], source=identified_source(*splits["train"], *splits["test"],
                                                                         raw.source), origin=raw.origin)


# sha256 of the images of the known copies (C-order bytes), whatever layout they come in.
KNOWN_IMAGES = {
    ("5aaf8a2cf2e577ff4dbb15e4f368840fab5aca1812bcc69682005f8dc661d466",
     "b7018a062865e9348a704e72416eb53c816b43cc8ac42ab43276a2b967508ab6"): SOURCE_JPEG_COPY,
}


def identified_source(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                      test_labels: np.ndarray, claimed: str) -> str:
    """The copy the arrays are, by their content: a known copy is named so in any layout (the JPEG
    copy repacked as the official pickles stays the JPEG copy); anything else keeps its claim."""
    if train_images.shape[0] != CIFAR10_TRAIN_IMAGES or test_images.shape[0] != CIFAR10_TEST_IMAGES:
        return claimed
    digest = tuple(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in (train_images, test_images))
    return KNOWN_IMAGES.get(digest, claimed)   # type: ignore[arg-type]


def _checked_images(images: np.ndarray, name: str, origin: str, fix: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        hint = " (that looks like CHW: transpose to HWC)" if images.shape[1:] == (3, 32, 32) else ""
        raise DatasetError(
            f"{origin}: {name} has shape {images.shape}, expected (N, 32, 32, 3) HWC RGB{hint}; {fix}")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.integer) and (images.size == 0 or (images.min() >= 0 and images.max() <= 255)):
        return images.astype(np.uint8)
    raise DatasetError(
        f"{origin}: {name} has dtype {images.dtype}, expected uint8 pixels 0..255 "
        f"(floats are refused: their scale is ambiguous); {fix}")


def _checked_labels(labels: np.ndarray, name: str, origin: str, fix: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DatasetError(
            f"{origin}: {name} has shape {labels.shape} and dtype {labels.dtype}, expected 1-D integers 0..9; {fix}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(
            f"{origin}: {name} range from {labels.min()} to {labels.max()}, expected class ids 0..9; {fix}")
    return labels.astype(np.int64)


def checked_subset_size(flag: str, requested: int | None, available: int) -> int:
    if requested is None:
        return available
    if isinstance(requested, bool) or not isinstance(requested, (int, np.integer)) or not 1 <= requested <= available:
        raise DatasetError(f"{flag} must be a whole number from 1 to {available}, got {requested!r}")
    return int(requested)


def fix_for(origin: str) -> str:
    if Path(origin).name == CACHE_NAME:
        return f"delete the cache {origin} so it is rebuilt from {ARCHIVE_NAME}"
    if "jpegq75" in Path(origin).name.lower():
        return "delete it and decode it again with shared/data/cifar10/unpack.py"
    return f"replace it with the official CIFAR-10 from {OFFICIAL_URL}"
