"""A stand-in ``torchvision`` for airbench 0.1.8 in the simulated-CUDA tests: this project's own.

Why: airbench imports torchvision, and a torchvision wheel cannot import beside the CPU-only torch
the tests run on (its compiled ops are built against a torch with CUDA). airbench 0.1.8 uses two
things from it: ``transforms.Normalize`` (on its image tensors) and ``datasets.CIFAR10`` (only when
its ``cifar10/*.pt`` files are missing, to download them). Here ``Normalize`` is the per-channel
``(x - mean) / std`` that torchvision computes, and ``CIFAR10`` raises: a test must never download.

    with stand_in_torchvision():
        import airbench
"""
from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

import torch

VERSION = "0.0+speedrun.standin"
MODULE_NAMES = ("torchvision", "torchvision.transforms", "torchvision.datasets")


class Normalize:
    """``torchvision.transforms.Normalize`` on a tensor: each channel (dim -3) less its mean, over its std."""

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor, inplace: bool = False) -> None:
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_floating_point():
            raise TypeError(f"Normalize needs a floating-point tensor, got {tensor.dtype}")
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std) if self.inplace else (tensor - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class DownloadRefused(RuntimeError):
    """Raised by the stand-in ``datasets.CIFAR10``: the code under test asked for a download."""


class CIFAR10:
    """``torchvision.datasets.CIFAR10``: refuses, so a missing data file is an error and never a download."""

    def __init__(self, root: Any, *args: Any, download: bool = False, **kwargs: Any) -> None:
        raise DownloadRefused(f"torchvision.datasets.CIFAR10({root!r}, download={download}) was called: the stand-in "
                              f"torchvision never downloads (are the cifar10/train.pt and test.pt files missing?)")


def make_torchvision() -> dict[str, types.ModuleType]:
    """The three modules, by name, ready for ``sys.modules``."""
    package = types.ModuleType("torchvision", "A stand-in torchvision (tests.support.torchvision_standin).")
    transforms = types.ModuleType("torchvision.transforms")
    datasets = types.ModuleType("torchvision.datasets")
    transforms.Normalize = Normalize          # type: ignore[attr-defined]
    datasets.CIFAR10 = CIFAR10                # type: ignore[attr-defined]
    package.transforms = transforms           # type: ignore[attr-defined]
    package.datasets = datasets               # type: ignore[attr-defined]
    package.__version__ = VERSION             # type: ignore[attr-defined]
    package.__path__ = []                     # a package, so `import torchvision.transforms as T` resolves
    return {"torchvision": package, "torchvision.transforms": transforms, "torchvision.datasets": datasets}


def install() -> None:
    """Put the stand-in into ``sys.modules`` for the rest of the process (a child that runs airbench)."""
    sys.modules.update(make_torchvision())


@contextlib.contextmanager
def stand_in_torchvision() -> Iterator[None]:
    """The stand-in for the block; whatever ``sys.modules`` held before is put back after."""
    saved = {name: sys.modules.get(name) for name in MODULE_NAMES}
    install()
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
