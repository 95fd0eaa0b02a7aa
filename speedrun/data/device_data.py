"""CIFAR-10 on the device as uint8 NCHW: moved there once, read by every step without a copy."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from speedrun.data.cifar10 import Cifar10


@dataclass
class DeviceData:
    """CIFAR-10 on the device as uint8 NCHW, moved there once."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor

    @classmethod
    def from_cifar(cls, data: Cifar10, device: torch.device) -> DeviceData:
        def images(a) -> Tensor:
            return torch.from_numpy(a).to(device).permute(0, 3, 1, 2).contiguous()

        def labels(a) -> Tensor:
            return torch.from_numpy(a).to(device=device, dtype=torch.long)

        return cls(images(data.train_images), labels(data.train_labels),
                   images(data.test_images), labels(data.test_labels))

    @property
    def device(self) -> torch.device:
        return self.train_images.device
