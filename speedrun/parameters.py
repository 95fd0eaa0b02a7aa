"""What a model hands the optimizer and how the optimizer is set: below both models and training.

A model config groups its parameters (:class:`ParamGroup`) for an :class:`OptimizerConfig`;
the trainer builds the optimizer from both. Keeping them here lets models know nothing of
training.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from speedrun.errors import SettingError
from speedrun.settings import check, setting

OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "muon")

# (peak learning rate, weight decay) an optimizer gets when a recipe made for SGD (or Muon) is run
# with it and the command line sets neither: PyTorch's default rate for it, and its decay (AdamW's
# decoupled 0.01, none for the others). An SGD recipe's peak of 0.4 would wreck Adam in a step.
OPTIMIZER_DEFAULTS: dict[str, tuple[float, float]] = {
    "adam": (1e-3, 0.0), "adamw": (1e-3, 1e-2), "rmsprop": (1e-2, 0.0), "adagrad": (1e-2, 0.0), "adadelta": (1.0, 0.0),
}


@dataclass(frozen=True)
class OptimizerConfig:
    """Everything but the learning rate, which the schedule supplies each step."""

    name: str = setting("sgd", "optimizer; every one is driven by the same device schedule", flag="--optimizer",
                        choices=OPTIMIZER_NAMES)
    momentum: float = setting(0.9, "SGD/RMSprop momentum or Adam beta1 (when the schedule does not cycle it)",
                              low=0, high=1, high_open=True)
    nesterov: bool = setting(True, "Nesterov momentum (SGD)")
    weight_decay: float = setting(5e-4, "weight decay (L2; decoupled where the recipe says so)", low=0)
    beta2: float = setting(0.999, "Adam/AdamW beta2", low=0, high=1, high_open=True)
    eps: float = setting(1e-8, "Adam/AdamW/RMSprop epsilon", flag="--optimizer-eps", low=0, low_open=True)
    alpha: float = setting(0.99, "RMSprop smoothing constant", low=0, high=1)
    rho: float = setting(0.9, "Adadelta decay", low=0, high=1)
    muon_momentum: float = setting(0.6, "Muon: momentum of the orthogonalized (filter) groups", low=0, high=1,
                                   high_open=True)
    newton_schulz_steps: int = setting(3, "Muon: Newton-Schulz iterations per update", low=1, high=100)
    muon_renormalize: bool = setting(True, "Muon: keep each filter's norm at sqrt(out_channels)")
    muon_renormalize_every: int = setting(1, "Muon: renormalize the filters on every N-th step only (1: every step)",
                                         low=1)
    muon_fp16_momentum: bool = setting(False, "Muon: keep the filters' momentum buffers in float16 (the public "
                                              "record's; half the memory traffic)")
    muon_batched: bool = setting(True, "Muon: orthogonalize same-shape filters in one batched Newton-Schulz, "
                                       "renormalize and update all filters in one foreach op each")

    def __post_init__(self) -> None:
        check(self)
        if self.nesterov and self.name == "sgd" and self.momentum == 0:
            raise SettingError("nesterov", "needs {momentum} > 0: set {momentum}, or turn {nesterov} off")


@dataclass(frozen=True)
class ParamGroup:
    """Parameters that share an lr multiplier and weight decay (e.g. BN biases at a larger rate).

    ``orthogonalize`` marks the groups Muon updates (the convolution filters); with another
    optimizer it must be False. ``momentum`` overrides the config's for this group.
    """

    params: Sequence[torch.nn.Parameter]
    lr_scale: float = 1.0
    weight_decay: float | None = None   # None: the optimizer config's
    orthogonalize: bool = False
    momentum: float | None = None
