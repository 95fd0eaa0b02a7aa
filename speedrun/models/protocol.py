"""What a recipe's model config is: data that builds a network, initializes it from a seed, and
groups its parameters for the optimizer. Every model config implements all three, so the
trainer needs no special cases."""
from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from speedrun.parameters import OptimizerConfig, ParamGroup
from speedrun.settings import setting


class ModelConfig(Protocol):
    """The network, its seeded (possibly data-dependent) init, and its parameter groups.

    A model config is a frozen dataclass (an ablation is ``dataclasses.replace``) with the
    layers' channel ``widths`` (``--width`` scales them).
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def widths(self) -> tuple[int, ...]: ...

    def build(self) -> nn.Module: ...

    def initialize(self, model: nn.Module, seed: int, train_images: Tensor) -> None: ...

    def param_groups(self, model: nn.Module, optimizer: OptimizerConfig) -> list[ParamGroup]: ...


# The settings every model config has, declared once here (a config calls them with its default).
def widths_setting(default: tuple[int, ...]) -> Any:
    return setting(default, "channel widths, comma-separated (prep and three layers for ResNet-9; three "
                            "blocks for fast94)", low=1, high=4096)


def num_classes_setting() -> Any:
    return setting(10, "classes the head predicts", low=2, high=100_000)


def logit_scale_setting(default: float) -> Any:
    return setting(default, "constant the logits are multiplied by", low=0, low_open=True)


def bn_momentum_setting(default: float) -> Any:
    return setting(default, "batch-norm momentum (PyTorch's convention: the newest batch's weight)", low=0,
                   low_open=True, high=1)


def reinitialize(model: nn.Module, seed: int) -> None:
    """Fresh weights and BN statistics from ``seed``, in place, so a compiled model is reused."""
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()


def one_group(model: nn.Module, optimizer: OptimizerConfig | None = None) -> list[ParamGroup]:
    """Every trainable tensor in one group at the schedule's lr and the config's weight decay;
    for Muon, the convolution filters in an orthogonalized group of their own."""
    if optimizer is not None and optimizer.name == "muon":
        filters = [p for p in model.parameters() if p.requires_grad and p.dim() == 4]
        others = [p for p in model.parameters() if p.requires_grad and p.dim() != 4]
        return [ParamGroup(filters, orthogonalize=True), *([ParamGroup(others)] if others else [])]
    return [ParamGroup([p for p in model.parameters() if p.requires_grad])]
