"""fast94: a small net and a short run built from what the published CIFAR-10 speedruns showed works.

The techniques come from Page's "How to train your ResNet" and Keller Jordan's airbench
("94% on CIFAR-10 in 3.29 Seconds on a Single GPU"); the code and the choices below are ours.
Every technique is a field of :class:`FastNetConfig`, :class:`LookaheadConfig` or the recipe's
other dataclasses, so an ablation is one ``dataclasses.replace`` (see
:func:`fast_recipe_ablations`).

The network (:class:`FastNet`), for 32x32 inputs::

    stem   2x2 conv, 3 -> 24 channels, no padding (32 -> 31 px), bias; activation
    block  3x3 conv -> 2x2 max-pool -> BN -> act -> 3x3 conv -> BN -> act   (x3: 64, 256, 256 wide)
    head   global max-pool -> linear (no bias) -> logits x 1/9

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
  :class:`~speedrun.training.optimizers.ParamGroup`.
* Decoupled weight decay (``decoupled_weight_decay``): the optimizer's groups get no L2 term;
  instead, after every step, :class:`DecoupledWeightDecay` shrinks every trained tensor by
  ``p <- p * (1 - eta_t * wd)``, with ``eta_t`` the schedule's learning rate for that step
  (*not* multiplied by the group's ``lr_scale``) and ``wd`` the optimizer config's
  ``weight_decay``. So the BN shifts, despite their 64x step size, decay at the same rate as
  everything else, and the decay does not pass through momentum. With the switch off, the same
  average strength is given as coupled L2 (``wd * (1 - momentum) / lr_scale`` per group, which
  Nesterov momentum amplifies by ``1 / (1 - momentum)``): the form airbench uses.
* GELU activations (``activation``), max-pooling before BN (normalising a quarter of the pixels
  is cheaper and trains the same), and logits scaled by 1/9 so the softmax does not saturate early.

Why these numbers. airbench94 states its rates per 1024 examples under a summed loss and divides
by ``1 + 1/(1 - momentum)``; for our mean loss that gives a peak ``eta = 11.5 / 7.67 = 1.5``.
Its weight decay works out to a shrink of about ``0.0133 * eta_t / eta`` per step once momentum
has amplified it, which is ``wd = 0.0133 / 1.5 = 0.0089`` in our decoupled form. Everything else
(batch 1024, momentum 0.85 Nesterov, label smoothing 0.2, 2-px reflect translation, alternating
flips, multi-view TTA, the lookahead constants) follows the published run.

Epoch budget: on the real CIFAR-10, airbench94 reaches 94% mean test accuracy in about 10
epochs (9.9) of this kind of net. fast94's default of 10 epochs is that published figure, **not a
measurement of this code**: it must be re-measured on a GPU (``speedrun --recipe fast94 --runs
N`` and ``speedrun anchor airbench94``) before fast94's time-to-94% is quoted.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speedrun.data.augment import CIFAR10_MEAN, CIFAR10_STD, AugmentConfig, normalize
from speedrun.models.resnet9 import LogitScale
from speedrun.training.optimizers import OptimizerConfig, ParamGroup, ScheduledOptimizer
from speedrun.recipes.base import Recipe
from speedrun.schedules.spec import ScheduleSpec
from speedrun.training.trainer import RunHooks, TrainConfig

if TYPE_CHECKING:
    from speedrun.training.trainer import Trainer

# The pure-torch reference of kernels/ema_update: per kernels/README.md's keep-or-drop rule the
# loop uses a kernel only once a GPU benchmark shows it faster, and none has been measured yet.
from speedrun.kernels.ema_update import ema_update_reference

ACTIVATIONS = ("gelu", "relu")

# Published-run constants, converted to our conventions (see the module docstring).
PEAK_LR = 1.5                  # per step, mean loss over a batch
MOMENTUM = 0.85
WEIGHT_DECAY = 0.0089          # decoupled: shrink per step = lr_t * WEIGHT_DECAY
BATCH_SIZE = 1024
EPOCHS = 10                    # the published budget; re-measure on a GPU
WARMUP_FRACTION = 0.23         # lr rises from 0.2*peak to peak over this share of the steps...
START_FACTOR, END_FACTOR = 0.2, 0.07   # ...then falls linearly to 0.07*peak at the end


@dataclass(frozen=True)
class FastNetConfig:
    """The fast net and the techniques that live in its init and its parameter groups."""

    widths: tuple[int, int, int] = (64, 256, 256)
    num_classes: int = 10
    logit_scale: float = 1 / 9
    activation: str = "gelu"           # "gelu" or "relu"
    bn_momentum: float = 0.4           # PyTorch convention: weight of the newest batch statistics
    bn_eps: float = 1e-12
    frozen_bn_scale: bool = True       # BN weight fixed at 1; only the shift trains
    dirac_init: bool = True            # block convs start with identity filters
    whiten: bool = True                # stem initialised by patch whitening; False: PyTorch's default init
    whiten_patch: int = 2              # stem kernel size; the stem has 2 * 3 * patch^2 channels
    whiten_eps: float = 5e-4           # added to the eigenvalues: damps near-empty directions
    whiten_samples: int = 5000         # training images (drawn with the run's seed) the covariance uses
    whiten_frozen: bool = True         # stem filters do not train
    whiten_bias_trainable: bool = True
    bias_lr_scale: float = 64.0        # lr multiplier of the BN shifts
    decoupled_weight_decay: bool = True  # see DecoupledWeightDecay; False: equal-strength coupled L2

    def __post_init__(self) -> None:
        if len(self.widths) != 3 or any(not isinstance(w, int) or w <= 0 for w in self.widths):
            raise ValueError(f"widths must be three positive channel counts, got {self.widths}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if self.whiten_patch < 1:
            raise ValueError(f"whiten_patch must be at least 1, got {self.whiten_patch}")
        if self.whiten_eps <= 0:
            raise ValueError(f"whiten_eps must be positive, got {self.whiten_eps}")
        if self.whiten_samples < 1:
            raise ValueError(f"whiten_samples must be at least 1, got {self.whiten_samples}")
        if self.bias_lr_scale <= 0:
            raise ValueError(f"bias_lr_scale must be positive, got {self.bias_lr_scale}")

    @property
    def stem_width(self) -> int:
        return 2 * 3 * self.whiten_patch ** 2

    def build(self) -> "FastNet":
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
                                                  self.whiten_patch, self.whiten_eps)
                stem = model.stem
                stem.weight.copy_(weight.to(stem.weight.dtype))
                stem.bias.copy_(bias.to(stem.bias.dtype))

    def param_groups(self, model: nn.Module, optimizer: OptimizerConfig) -> list[ParamGroup]:
        """Weights first (its lr is the one logged), then the BN shifts at ``bias_lr_scale``.

        Frozen tensors are left out. Decay: none here when decoupled (DecoupledWeightDecay
        applies it); otherwise coupled L2 of the same average strength in each group.
        """
        shifts = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.bias.requires_grad]
        shift_ids = {id(p) for p in shifts}
        weights = [p for p in model.parameters() if p.requires_grad and id(p) not in shift_ids]

        def coupled(lr_scale: float) -> float:
            return 0.0 if self.decoupled_weight_decay else optimizer.weight_decay * (1 - optimizer.momentum) / lr_scale

        groups = [ParamGroup(weights, 1.0, coupled(1.0))]
        if shifts:
            groups.append(ParamGroup(shifts, self.bias_lr_scale, coupled(self.bias_lr_scale)))
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
        stem.bias.requires_grad_(config.whiten_bias_trainable)
        super().__init__(OrderedDict([
            ("stem", stem),
            ("act", _activation(config.activation)),
            ("block1", ConvBlock(config.stem_width, w1, config)),
            ("block2", ConvBlock(w1, w2, config)),
            ("block3", ConvBlock(w2, w3, config)),
            ("pool", nn.AdaptiveMaxPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(w3, config.num_classes, bias=False)),
            ("scale", LogitScale(config.logit_scale)),
        ]))


def _batch_norm(channels: int, config: FastNetConfig) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=config.bn_eps, momentum=config.bn_momentum)
    norm.weight.requires_grad_(not config.frozen_bn_scale)
    return norm


def _activation(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.ReLU(inplace=True)


def _blocks(model: nn.Module) -> list[ConvBlock]:
    return [m for m in model.modules() if isinstance(m, ConvBlock)]


@torch.no_grad()
def dirac_(weight: Tensor) -> None:
    """Make the first ``min(c_out, c_in)`` filters of a conv weight the identity map, in place."""
    c_out, c_in, kh, kw = weight.shape
    n = min(c_out, c_in)
    weight[:n].zero_()
    weight[:n, :n, kh // 2, kw // 2].copy_(torch.eye(n, dtype=weight.dtype, device=weight.device))


def sample_images(images: Tensor, count: int, seed: int) -> Tensor:
    """``count`` distinct images (all when there are fewer), chosen by a generator seeded with ``seed``."""
    if count >= len(images):
        return images
    gen = torch.Generator(device=images.device).manual_seed(seed)
    return images[torch.randperm(len(images), generator=gen, device=images.device)[:count]]


@torch.no_grad()
def patch_whitening(images_u8: Tensor, patch: int, eps: float,
                    chunk: int = 1000) -> tuple[Tensor, Tensor, Tensor]:
    """Whitening filters for every ``patch`` x ``patch`` patch of the normalised uint8 NCHW images.

    Returns ``(weight, bias, eigenvalues)``: a conv weight ``(2D, C, patch, patch)`` holding the
    ``D = C * patch^2`` filters ``v_k / sqrt(lam_k + eps)`` (largest eigenvalue first) and then
    their negatives; a bias ``-weight @ mean`` that centres the outputs; and the eigenvalues
    ``lam`` (descending, float64). On these patches the first D outputs have zero mean and
    covariance ``diag(lam / (lam + eps))``. Accumulates in float64, ``chunk`` images at a time.
    """
    channels = images_u8.shape[1]
    dim = channels * patch * patch
    total = torch.zeros(dim, dtype=torch.float64, device=images_u8.device)
    outer = torch.zeros(dim, dim, dtype=torch.float64, device=images_u8.device)
    count = 0
    for start in range(0, len(images_u8), chunk):
        x = normalize(images_u8[start:start + chunk], CIFAR10_MEAN, CIFAR10_STD, channels_last=False)
        cols = F.unfold(x.double(), patch)                    # (B, D, L), D ordered as (C, kh, kw)
        rows = cols.transpose(1, 2).reshape(-1, dim)          # one row per patch
        total += rows.sum(0)
        outer += rows.T @ rows
        count += rows.shape[0]
    mean = total / count
    covariance = outer / count - torch.outer(mean, mean)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)     # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps).unsqueeze(1)   # row k: v_k / sqrt(lam_k + eps)
    both = torch.cat([filters, -filters])
    bias = -(both @ mean)
    return both.float().view(2 * dim, channels, patch, patch), bias.float(), eigenvalues


# --------------------------------------------------------------------------------------
# Extensions: per-step device work, no host sync
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoupledWeightDecay:
    """Carries out decoupled weight decay when the model config asks for it (``decoupled_weight_decay``).

    After every optimizer step: ``p <- p * (1 - eta_t * wd)`` for every tensor the optimizer
    trains, where ``eta_t`` is the schedule's lr of that step (each group's device lr divided
    by its ``lr_scale``) and ``wd`` is ``OptimizerConfig.weight_decay``. Applied after the
    gradient step, so one step is ``p1 = (p0 - eta_t * scale * direction) * (1 - eta_t * wd)``.
    The switch lives in the model config because that is where the groups' coupled decay is
    set; with it off (or ``wd == 0``) this extension does nothing.
    """

    def make(self, trainer: "Trainer", optimizer: ScheduledOptimizer) -> RunHooks:
        rate = trainer.optimizer_config.weight_decay
        if not getattr(trainer.model_config, "decoupled_weight_decay", False) or rate == 0:
            return RunHooks()
        groups = [(list(group["params"]), group["lr"], rate / scale)
                  for group, scale in zip(optimizer.optimizer.param_groups, optimizer.lr_scales)]

        @torch.no_grad()
        def decay() -> None:
            for params, lr, rate_per_lr in groups:
                torch._foreach_mul_(params, 1 - lr * rate_per_lr)

        return RunHooks(after_step=(decay,))


@dataclass(frozen=True)
class LookaheadConfig:
    """A slow copy of the weights that the fast weights are pulled back to every ``every`` steps.

    Rule, with ``n`` the number of steps taken so far in the run and ``T`` the run's planned
    steps: when ``n % every == 0``, ``d = decay * min(n / T, 1) ** ramp_power``, then
    ``slow <- d * slow + (1 - d) * fast`` and ``fast <- slow`` for every trained parameter
    (and, with ``include_buffers``, every floating-point buffer: the BN running statistics).
    At the end of the last epoch one more pull is made if steps were taken since the last one,
    so the evaluated weights are the slow ones and no step is dropped. ``d`` ramps from 0 (early:
    the pull is a no-op, the weights move freely) to ``decay`` (late: averaging over about
    ``every / (1 - decay)`` steps). The per-update decays are one device tensor made before the
    run; the step count is a host integer; so no step syncs with the host. ``enabled=False``
    switches it off. This is the form airbench uses (0.95**5 every 5 steps, cubic ramp).
    """

    enabled: bool = True
    every: int = 5
    decay: float = 0.95 ** 5
    ramp_power: float = 3.0
    include_buffers: bool = True

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"lookahead every must be at least 1, got {self.every}")
        if not 0 <= self.decay <= 1:
            raise ValueError(f"lookahead decay must be in [0, 1], got {self.decay}")
        if self.ramp_power < 0:
            raise ValueError(f"lookahead ramp_power must be >= 0, got {self.ramp_power}")

    def decay_at(self, step: int, total_steps: int) -> float:
        """The decay ``d`` of the pull after ``step`` steps of a ``total_steps`` run."""
        return self.decay * min(step / max(total_steps, 1), 1.0) ** self.ramp_power

    def make(self, trainer: "Trainer", optimizer: ScheduledOptimizer) -> RunHooks:
        if not self.enabled:
            return RunHooks()
        model = trainer.model
        fast = [p for p in model.parameters() if p.requires_grad]
        if self.include_buffers:
            fast += [b for b in model.buffers() if b.is_floating_point()]
        slow = [t.detach().clone() for t in fast]
        total = trainer.steps_per_epoch * trainer.config.epochs
        decays = torch.tensor([self.decay_at(n, total) for n in range(total + 1)], dtype=torch.float32,
                              device=trainer.device)
        state = {"steps": 0, "pulled_at": 0}

        def pull() -> None:
            n = min(state["steps"], total)
            lookahead_pull(slow, fast, decays[n])
            state["pulled_at"] = state["steps"]

        def after_step() -> None:
            state["steps"] += 1
            if state["steps"] % self.every == 0:
                pull()

        def after_epoch(epoch: int) -> None:
            if epoch == trainer.config.epochs and state["steps"] > state["pulled_at"]:
                pull()

        return RunHooks(after_step=(after_step,), after_epoch=(after_epoch,))


@torch.no_grad()
def lookahead_pull(slow: Sequence[Tensor], fast: Sequence[Tensor], decay: Tensor) -> None:
    """``slow <- decay * slow + (1 - decay) * fast``, then ``fast <- slow``; ``decay`` a 0-d device tensor."""
    ema_update_reference(list(slow), list(fast), decay)
    torch._foreach_copy_(list(fast), list(slow))


# --------------------------------------------------------------------------------------
# The recipe and its ablations
# --------------------------------------------------------------------------------------


def fast94_schedule(peak_lr: float = PEAK_LR):
    """Short linear warm-up from 0.2x to the peak over 23% of the steps, then linear decay to 0.07x."""
    knots = ((0.0, START_FACTOR * peak_lr), (WARMUP_FRACTION, peak_lr), (1.0, END_FACTOR * peak_lr))
    return ScheduleSpec("piecewise_linear", {"knots": knots}, knots_as_fraction=True)


def fast94_recipe(batch_size: int = BATCH_SIZE) -> Recipe:
    """The fast94 recipe (module docstring).

    Another ``batch_size`` scales the peak lr linearly (``1.5 * batch_size / 1024``): the
    published rates are per example, and since the decoupled decay is ``lr_t * wd`` per step,
    the decay per example stays the same too. (A ``--batch-size`` override on the command line
    does not rescale the lr; use this function for that.)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    return Recipe(
        name="fast94",
        description="airbench-style 3-block GELU net (64/256/256), frozen patch-whitening stem, Dirac init, "
                    "frozen BN scales, Nesterov SGD 0.85 with decoupled decay and 64x BN-shift lr, label "
                    "smoothing 0.2, lookahead, alternating flips + 2-px reflect translation, multi-view TTA; "
                    f"{EPOCHS} epochs of batch {batch_size} (published budget: re-measure on a GPU)",
        target=0.94,
        model=FastNetConfig(),
        augment=AugmentConfig(crop_padding=2, pad_mode="reflect", flip=True, cutout_size=0),
        optimizer=OptimizerConfig(name="sgd", momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY),
        schedule=fast94_schedule(PEAK_LR * batch_size / BATCH_SIZE),
        train=TrainConfig(epochs=EPOCHS, batch_size=batch_size, label_smoothing=0.2, tta="multi",
                          flip_mode="alternate", eval_every=EPOCHS),
        extensions=(DecoupledWeightDecay(), LookaheadConfig()),
    )


def _with_lookahead(recipe: Recipe, **changes) -> Recipe:
    extensions = tuple(dataclasses.replace(e, **changes) if isinstance(e, LookaheadConfig) else e
                       for e in recipe.extensions)
    return recipe.replace(extensions=extensions)


# name -> (what it switches off, how)
_ABLATIONS: dict[str, tuple[str, Callable[[Recipe], Recipe]]] = {
    "no_whitening": ("stem keeps PyTorch's default init and trains",
                     lambda r: r.replace(model=dataclasses.replace(r.model, whiten=False))),
    "whitening_trained": ("whitening stem initialised but trained",
                          lambda r: r.replace(model=dataclasses.replace(r.model, whiten_frozen=False))),
    "no_dirac": ("block convs keep PyTorch's default init",
                 lambda r: r.replace(model=dataclasses.replace(r.model, dirac_init=False))),
    "learned_bn_scale": ("BN scales trained like the weights",
                         lambda r: r.replace(model=dataclasses.replace(r.model, frozen_bn_scale=False))),
    "no_bias_lr_scale": ("BN shifts at the weights' lr",
                         lambda r: r.replace(model=dataclasses.replace(r.model, bias_lr_scale=1.0))),
    "coupled_weight_decay": ("weight decay as coupled L2 of the same average strength",
                             lambda r: r.replace(model=dataclasses.replace(r.model, decoupled_weight_decay=False))),
    "no_weight_decay": ("no weight decay",
                        lambda r: r.replace(optimizer=dataclasses.replace(r.optimizer, weight_decay=0.0))),
    "no_nesterov": ("plain momentum instead of Nesterov",
                    lambda r: r.replace(optimizer=dataclasses.replace(r.optimizer, nesterov=False))),
    "relu": ("ReLU instead of GELU",
             lambda r: r.replace(model=dataclasses.replace(r.model, activation="relu"))),
    "no_label_smoothing": ("no label smoothing",
                           lambda r: r.replace(train=dataclasses.replace(r.train, label_smoothing=0.0))),
    "no_lookahead": ("no lookahead", lambda r: _with_lookahead(r, enabled=False)),
    "random_flips": ("flips drawn at random every epoch instead of alternating",
                     lambda r: r.replace(train=dataclasses.replace(r.train, flip_mode="random"))),
    "no_flips": ("no horizontal flips",
                 lambda r: r.replace(augment=dataclasses.replace(r.augment, flip=False))),
    "no_translate": ("no random translation",
                     lambda r: r.replace(augment=dataclasses.replace(r.augment, crop_padding=0))),
    "zero_pad_translate": ("translation with zero padding instead of reflection",
                           lambda r: r.replace(augment=dataclasses.replace(r.augment, pad_mode="zeros"))),
    "flip_tta": ("test-time views: image and mirror only",
                 lambda r: r.replace(train=dataclasses.replace(r.train, tta="flip"))),
    "no_tta": ("no test-time augmentation",
               lambda r: r.replace(train=dataclasses.replace(r.train, tta="none"))),
}


def fast_recipe_ablations(base: "Recipe | None" = None) -> dict[str, Recipe]:
    """One recipe per technique, each ``base`` (default fast94) with only that technique switched off.

    Keys are the ablation names; each recipe is named ``fast94-<key>`` and says what it changed.
    """
    base = base or fast94_recipe()
    out = {}
    for key, (what, change) in _ABLATIONS.items():
        recipe = change(base)
        out[key] = recipe.replace(name=f"{base.name}-{key}", description=f"{base.name} with {what}")
    return out
