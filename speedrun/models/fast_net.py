"""fast94's network: a small airbench-style net whose first layer is initialized by patch whitening.

The network (:class:`FastNet`), for 32x32 inputs::

    stem   2x2 conv, 3 -> 24 channels, no padding (32 -> 31 px), bias; activation
    block  3x3 conv -> 2x2 max-pool -> BN -> act -> 3x3 conv -> BN -> act   (x3: 64, 256, 256 wide)
    head   global max-pool (or airbench's 3x3 window) -> linear (no bias) -> logits x 1/9

Choices and why:

* The stem is a data-dependent *whitening* layer (``whiten``): at ``initialize`` time, on the
  device, ``whiten_samples`` training images drawn with the run's seed are normalised exactly as
  the training loop does, cut into every 2x2x3 patch (12 numbers), and the patches' covariance
  ``C = V diag(lam) V^T`` is computed (float64, centred). Filter ``k`` is ``v_k / sqrt(lam_k + eps)``
  and the stem holds these 12 filters and their negatives (24 channels) so that the activation
  passes both signs. The bias is ``-W mu`` (``mu``: the patch mean), so on the sampled patches
  the first 12 outputs have mean 0 and covariance ``diag(lam / (lam + eps))``: the identity for
  every direction whose variance is well above ``eps``, with the near-empty ones damped rather
  than blown up. The filters are frozen by default (``whiten_frozen``): they are already a good
  first layer, and a frozen layer needs no weight gradient. The bias stays trainable
  (``whiten_bias_trainable``); airbench freezes it after 3 epochs, which we do not do.
  Per seed: each run draws its own sample, so the run-to-run spread includes this init.
* Identity (Dirac) init (``dirac_init``): in every block conv the first ``min(c_in, c_out)``
  filters start as the identity map (centre tap 1 on their own input channel), the rest keep
  PyTorch's default init; a freshly initialised block then passes its input through, which lets
  a short run use large steps from the first epoch.
* Batch norm with frozen scales (``frozen_bn_scale``): the weight stays 1 (``requires_grad``
  False); only the shift trains. The convolutions before BN are scale-free, so a learned scale
  adds nothing but an extra direction for the optimizer to wander in.
* BN shifts learn ``bias_lr_scale`` (64) times faster than the weights, through their own
  :class:`~speedrun.parameters.ParamGroup`.
* Decoupled weight decay (``decoupled_weight_decay``): the optimizer's groups get no L2 term;
  instead, after every step, :class:`~speedrun.extensions.decoupled_weight_decay.DecoupledWeightDecay` shrinks every trained tensor by
  ``p <- p * (1 - eta_t * wd)``, with ``eta_t`` the schedule's learning rate for that step
  (*not* multiplied by the group's ``lr_scale``) and ``wd`` the optimizer config's
  ``weight_decay``. So the BN shifts, despite their 64x step size, decay at the same rate as
  everything else, and the decay does not pass through momentum. With the switch off, the same
  average strength is given as coupled L2 (``wd * (1 - momentum) / lr_scale`` per group, which
  Nesterov momentum amplifies by ``1 / (1 - momentum)``): the form airbench uses.
* GELU activations (``activation``; SiLU, as the public record uses, or ReLU), max-pooling before BN (normalising a quarter of the pixels
  is cheaper and trains the same), and logits scaled by 1/9 so the softmax does not saturate early.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speedrun.checks import positive_ints
from speedrun.models.protocol import bn_momentum_setting, logit_scale_setting, num_classes_setting, widths_setting
from speedrun.models.resnet9 import LogitScale
from speedrun.models.whitening import WHITEN_METHODS, patch_whitening, sample_images
from speedrun.parameters import OptimizerConfig, ParamGroup
from speedrun.settings import check, setting

ACTIVATIONS = ("gelu", "relu", "silu")
HEAD_POOLS = ("global", "window3")


@dataclass(frozen=True)
class FastNetConfig:
    """The fast net and the techniques that live in its init and its parameter groups."""

    widths: tuple[int, int, int] = widths_setting((64, 256, 256))
    num_classes: int = num_classes_setting()
    logit_scale: float = logit_scale_setting(1 / 9)
    activation: str = setting("gelu", "activation function", choices=ACTIVATIONS)
    head_pool: str = setting("global", "the head's pooling of block 3's map: its max (global), or airbench's "
                                       "MaxPool2d(3), the max of its top-left 3x3 window (window3); on 32 px images "
                                       "the map is 3x3 and the two agree", choices=HEAD_POOLS)
    bn_momentum: float = bn_momentum_setting(0.4)
    bn_eps: float = setting(1e-12, "batch-norm epsilon", low=0, low_open=True, high=1)
    frozen_bn_scale: bool = setting(True, "batch-norm scales fixed at 1 (only the shifts train)")
    dirac_init: bool = setting(True, "block convolutions start as identity filters")
    whiten: bool = setting(True, "initialize the stem by patch whitening (else PyTorch's default init)")
    whiten_patch: int = setting(2, "stem kernel size; the stem has 2 * 3 * patch^2 channels", low=1, high=8)
    whiten_eps: float = setting(5e-4, "added to the patch covariance's eigenvalues: damps near-empty directions",
                                low=0, low_open=True)
    whiten_samples: int = setting(5000, "training images (drawn with the run's seed) the whitening uses", low=1,
                                  high=50_000)
    whiten_method: str = setting("eigh", "how the whitening is computed: the float64 covariance's eigenvectors (eigh) "
                                         "or the float32 SVD of the patches (svd: no float64, for few images)",
                                 choices=WHITEN_METHODS)
    whiten_frozen: bool = setting(True, "the whitening filters do not train")
    whiten_bias_trainable: bool = setting(True, "the stem's bias trains")
    bias_lr_scale: float = setting(64.0, "learning-rate multiplier of the batch-norm shifts", low=0, low_open=True)
    whiten_bias_lr_scale: float = setting(1.0, "learning-rate multiplier of the whitening stem's bias", low=0, low_open=True)
    head_lr_scale: float = setting(1.0, "learning-rate multiplier of the linear head", low=0, low_open=True)
    head_unit_std: bool = setting(False, "scale the head's initial weights to standard deviation 1")
    decoupled_weight_decay: bool = setting(True, "weight decay decoupled from the gradient step (else coupled "
                                                 "L2 of the same average strength)")

    def __post_init__(self) -> None:
        check(self)
        object.__setattr__(self, "widths", positive_ints("widths", self.widths, 3))

    @property
    def stem_width(self) -> int:
        return 2 * 3 * self.whiten_patch ** 2

    def build(self) -> FastNet:
        return FastNet(self)

    def initialize(self, model: nn.Module, seed: int, train_images: Tensor) -> None:
        """Fresh weights from ``seed``: default init, Dirac filters, then the whitening stem.

        ``train_images`` is the uint8 NCHW training set on the device; the whitening sample is
        drawn from it with a generator seeded by ``seed``.
        """
        torch.manual_seed(seed)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                    module.reset_parameters()
                if isinstance(module, nn.BatchNorm2d):
                    module.reset_running_stats()
            if self.dirac_init:
                for block in _blocks(model):
                    for conv in (block.conv1, block.conv2):
                        dirac_(conv.weight)
            if self.whiten:
                weight, bias, _ = patch_whitening(sample_images(train_images, self.whiten_samples, seed),
                                                  self.whiten_patch, self.whiten_eps, method=self.whiten_method)
                stem = model.get_submodule("stem")
                assert isinstance(stem, nn.Conv2d) and stem.bias is not None
                stem.weight.copy_(weight.to(stem.weight.dtype))
                stem.bias.copy_(bias.to(stem.bias.dtype))
            if self.head_unit_std:
                head = model.get_submodule("fc")
                assert isinstance(head, nn.Linear)
                head.weight.div_(head.weight.std())

    def param_groups(self, model: nn.Module, optimizer: OptimizerConfig) -> list[ParamGroup]:
        """Weights first (its lr is the one logged), then the BN shifts, the head, the stem's bias.

        The weights are the trained convolution filters; with Muon they are the orthogonalized
        group and the rest stay SGD groups. The head and the stem's bias are groups of their own
        (at ``head_lr_scale`` and ``whiten_bias_lr_scale``), so an extension can give the bias a
        schedule of its own; at the default scales of 1 the updates equal one shared group's. Frozen tensors are left out. Decay:
        none here when decoupled (DecoupledWeightDecay applies it); otherwise coupled L2 of the
        same average strength in each SGD group (Muon's filters take none).
        """
        def trainable(params: Iterable[object]) -> list[nn.Parameter]:
            return [p for p in params if isinstance(p, nn.Parameter) and p.requires_grad]

        shifts = trainable(m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        head = trainable([model.get_submodule("fc").weight])
        stem_bias = trainable([model.get_submodule("stem").bias])
        apart = {id(p) for p in (*shifts, *head, *stem_bias)}
        weights = [p for p in model.parameters() if p.requires_grad and id(p) not in apart]

        def coupled(lr_scale: float) -> float:
            return 0.0 if self.decoupled_weight_decay else optimizer.weight_decay * (1 - optimizer.momentum) / lr_scale

        muon = optimizer.name == "muon"
        groups = [ParamGroup(weights, 1.0, 0.0 if muon else coupled(1.0), orthogonalize=muon)]
        for params, scale in ((shifts, self.bias_lr_scale), (head, self.head_lr_scale),
                              (stem_bias, self.whiten_bias_lr_scale)):
            if params:
                groups.append(ParamGroup(params, scale, coupled(scale)))
        return groups


class ConvBlock(nn.Module):
    """3x3 conv -> 2x2 max-pool -> BN -> act -> 3x3 conv -> BN -> act: halves the resolution."""

    def __init__(self, c_in: int, c_out: int, config: FastNetConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batch_norm(c_out, config)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _batch_norm(c_out, config)
        self.act = _activation(config.activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class FastNet(nn.Sequential):
    """The fast94 network (module docstring); named stages: stem, act, block1-3, pool, flatten, fc, scale."""

    def __init__(self, config: FastNetConfig = FastNetConfig()) -> None:
        w1, w2, w3 = config.widths
        stem = nn.Conv2d(3, config.stem_width, config.whiten_patch, padding=0, bias=True)
        stem.weight.requires_grad_(not (config.whiten and config.whiten_frozen))
        assert stem.bias is not None
        stem.bias.requires_grad_(config.whiten_bias_trainable)
        super().__init__(OrderedDict([
            ("stem", stem),
            ("act", _activation(config.activation)),
            ("block1", ConvBlock(config.stem_width, w1, config)),
            ("block2", ConvBlock(w1, w2, config)),
            ("block3", ConvBlock(w2, w3, config)),
            ("pool", nn.AdaptiveMaxPool2d(1) if config.head_pool == "global" else nn.MaxPool2d(3)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(w3, config.num_classes, bias=False)),
            ("scale", LogitScale(config.logit_scale)),
        ]))


def _batch_norm(channels: int, config: FastNetConfig) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=config.bn_eps, momentum=config.bn_momentum)
    norm.weight.requires_grad_(not config.frozen_bn_scale)
    return norm


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    return nn.SiLU() if name == "silu" else nn.GELU()


def _blocks(model: nn.Module) -> list[ConvBlock]:
    return [m for m in model.modules() if isinstance(m, ConvBlock)]


@torch.no_grad()
def dirac_(weight: Tensor) -> None:
    """Make the first ``min(c_out, c_in)`` filters of a conv weight the identity map, in place."""
    c_out, c_in, kh, kw = weight.shape
    n = min(c_out, c_in)
    weight[:n].zero_()
    weight[:n, :n, kh // 2, kw // 2].copy_(torch.eye(n, dtype=weight.dtype, device=weight.device))
