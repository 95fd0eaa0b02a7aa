"""Tiny CIFAR-10 look-alikes with learnable structure, for tests that must train in seconds."""
from __future__ import annotations

import numpy as np

from speedrun.data.cifar10 import Cifar10

# One distinct, well separated RGB colour per class for the synthetic data.
_CLASS_COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (250, 190, 190), (0, 0, 128),
], dtype=np.int16)


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
