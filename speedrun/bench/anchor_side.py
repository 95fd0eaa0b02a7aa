"""What an anchor side is: a published training run that the anchor times beside ours, and the
data files it reads (airbench's ``cifar10/train.pt`` and ``test.pt``, written from our arrays)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from speedrun.data.cifar10 import CIFAR10_CLASSES, Cifar10

DATA_FOLDER = "cifar10"


@dataclass(frozen=True)
class AnchorOutcome:
    """What one anchor run reports; its time is measured by the caller, never by the side."""

    final_test_acc: float
    epochs: float                      # training epochs the run took (for the record's curve entry)
    details: dict = field(default_factory=dict)


class AnchorSide(Protocol):
    """A published training run to compare against. Called with the working folder as cwd."""

    label: str

    def check(self, device: torch.device, train_images: int) -> None:
        """Raise SpeedrunError (one line naming the fix) if it cannot run here or on ``train_images``
        training images (at most; a subset may be smaller); cheap, before any data."""

    def prepare(self, device: torch.device) -> None:
        """Load ``cifar10/train.pt`` and ``cifar10/test.pt`` from the cwd onto the device (not timed)."""

    def rehearse(self) -> None:
        """Pay one-time costs (kernel selection, compilation) without a measured run."""

    def run(self, seed: int) -> AnchorOutcome:
        """Train from scratch with ``seed`` and evaluate on the test set (timed by the caller)."""

    def describe(self) -> dict:
        """JSON-ready: package, version, settings, and how its own timer differs from ours."""


def write_anchor_data(data: Cifar10, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``train.pt`` and ``test.pt`` (airbench's format) under ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, images, labels in (("train.pt", data.train_images, data.train_labels),
                                 ("test.pt", data.test_images, data.test_labels)):
        path = folder / name
        torch.save({"images": torch.from_numpy(images.copy()),
                    "labels": torch.from_numpy(labels.astype("int64")),
                    "classes": list(CIFAR10_CLASSES)}, path)
        paths.append(path)
    return paths[0], paths[1]
