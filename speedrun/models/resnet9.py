"""The classic ResNet-9 of "How to train your ResNet" (Page), as used by the seed assignment.

prep conv 64 -> layer1 (conv 128, max-pool, BN, ReLU, + residual block of two conv-BN-ReLU)
-> layer2 (conv 256, max-pool, BN, ReLU) -> layer3 (conv 512, max-pool, BN, ReLU, + residual
block) -> global max-pool -> linear -> logits scaled by a constant. Pooling before batch norm
does the normalisation on a quarter of the pixels, which is cheaper and trains the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speedrun.checks import positive_ints
from speedrun.models.protocol import bn_momentum_setting, logit_scale_setting, num_classes_setting, one_group, reinitialize, widths_setting
from speedrun.parameters import OptimizerConfig, ParamGroup
from speedrun.settings import check


@dataclass(frozen=True)
class ResNet9Config:
    """Widths of prep and the three layers; the logit scale keeps the softmax from saturating early."""

    widths: tuple[int, int, int, int] = widths_setting((64, 128, 256, 512))
    num_classes: int = num_classes_setting()
    logit_scale: float = logit_scale_setting(0.125)
    bn_momentum: float = bn_momentum_setting(0.1)

    def __post_init__(self) -> None:
        check(self)
        object.__setattr__(self, "widths", positive_ints("widths", self.widths, 4))

    def build(self) -> ResNet9:
        return ResNet9(self)

    def initialize(self, model: nn.Module, seed: int, train_images: torch.Tensor) -> None:
        """PyTorch's default init from ``seed`` (the data are not used)."""
        reinitialize(model, seed)

    def param_groups(self, model: nn.Module, optimizer: OptimizerConfig) -> list[ParamGroup]:
        return one_group(model, optimizer)


def conv_bn_relu(c_in: int, c_out: int, *, pool: bool = False, bn_momentum: float = 0.1) -> nn.Sequential:
    """3x3 conv (no bias: BN supplies it), optional 2x2 max-pool, batch norm, ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out, momentum=bn_momentum), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + f(x), with f two conv-BN-ReLU blocks of unchanged width."""

    def __init__(self, channels: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, channels, bn_momentum=bn_momentum),
            conv_bn_relu(channels, channels, bn_momentum=bn_momentum),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Sequential):
    """ResNet-9; a Sequential so that its stages are easy to inspect and to profile."""

    def __init__(self, config: ResNet9Config = ResNet9Config()) -> None:
        w0, w1, w2, w3 = config.widths
        m = config.bn_momentum
        super().__init__(
            conv_bn_relu(3, w0, bn_momentum=m),
            conv_bn_relu(w0, w1, pool=True, bn_momentum=m),
            Residual(w1, m),
            conv_bn_relu(w1, w2, pool=True, bn_momentum=m),
            conv_bn_relu(w2, w3, pool=True, bn_momentum=m),
            Residual(w3, m),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(w3, config.num_classes, bias=False),
            LogitScale(config.logit_scale),
        )


class LogitScale(nn.Module):
    """Multiply logits by a fixed constant (Page's 0.125), a cheap temperature for the loss."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
