"""The learning-rate range test (Smith, 2017): find the bounds of a cyclical or one-cycle policy.

Train for ``num_steps`` steps while the lr rises exponentially (or linearly) from ``start_lr``
to ``end_lr``, and watch the loss. Single-batch losses are noisy, so the curve is smoothed with
a bias-corrected exponential moving average (``beta``); once the smoothed loss exceeds
``diverge_factor`` times its minimum the test stops, since larger rates only diverge. The
model's and optimizer's state are restored afterwards, so the test leaves no trace.

Suggestions read off the smoothed curve:

* ``steepest_lr``: where the smoothed loss falls fastest against log(lr), searched up to the
  minimum (beyond it the loss is no longer falling);
* ``min_div_10_lr``: the lr at the smoothed minimum divided by 10, a margin below the edge of
  divergence;
* ``one_cycle_max_lr``: the geometric mean of those two, i.e. halfway between them on the
  log-lr axis the curve is measured on: the steepest point alone is noisy and the min/10
  rule is conservative by construction;
* ``one_cycle_base_lr``: ``one_cycle_max_lr / one_cycle_divisor`` (10): the lower bound a
  one-cycle policy starts (and, without annihilation, ends) at;
* ``cyclic_max_lr`` / ``cyclic_base_lr``: the same upper bound, and a lower bound
  ``cyclic_divisor`` (4) times smaller, as Smith suggests for triangular cycles;
* ``valley_lr``: the middle (on the log-lr axis) of the longest stretch of the curve over which
  the smoothed loss keeps falling, fastai's "valley" rule: robust to a noisy steepest point.

All are None when the loss never fell (the range started too high, or too few steps). A curve
that never diverged (the test ran to ``end_lr``) has its minimum at the end of the range, so
the rules that read the minimum can only understate: :func:`divergence_warning` says so.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from speedrun.data.augment import (
    batch_order,
)
from speedrun.data.device_data import DeviceData
from speedrun.errors import SettingError
from speedrun.settings import check, setting
from speedrun.training.optimizers import build_optimizer
from speedrun.training.precision import scaled_backward, static_loss_scale
from speedrun.training.trainer import Trainer

if TYPE_CHECKING:
    from speedrun.data.augment import AugmentConfig
    from speedrun.models.protocol import ModelConfig
    from speedrun.parameters import OptimizerConfig
    from speedrun.training.config import TrainConfig


class TrainingSetup(Protocol):
    """What the range test needs of a recipe: how its runs train."""

    @property
    def model(self) -> ModelConfig: ...
    @property
    def augment(self) -> AugmentConfig: ...
    @property
    def optimizer(self) -> OptimizerConfig: ...
    @property
    def train(self) -> TrainConfig: ...

LR_RAMPS = ("exp", "linear")


@dataclass(frozen=True)
class LRFinderConfig:
    """How the range test ramps the lr, smooths the loss, stops, and turns the curve into bounds."""

    start_lr: float = setting(1e-4, "first learning rate", low=0, low_open=True)
    end_lr: float = setting(10.0, "last learning rate", low=0, low_open=True)
    num_steps: int = setting(100, "steps from the first rate to the last", low=2, high=100_000)
    ramp: str = setting("exp", "exp: geometric steps; linear: equal steps", choices=LR_RAMPS)
    beta: float = setting(0.98, "smoothing of the loss curve", low=0, high=1, high_open=True)
    diverge_factor: float = setting(4.0, "stop once the smoothed loss exceeds this x its minimum", low=1,
                                    low_open=True)
    one_cycle_divisor: float = 10.0  # one-cycle lower bound = max_lr / this
    cyclic_divisor: float = 4.0      # cyclical base_lr = max_lr / this

    def __post_init__(self) -> None:
        check(self)
        if self.end_lr <= self.start_lr:
            raise SettingError("end_lr", f"({self.end_lr}) must be greater than {{start_lr}} ({self.start_lr})")


@dataclass(frozen=True)
class LRFinderResult:
    """The curve as measured (``lrs[i]`` is the rate of the step whose batch gave ``losses[i]``)."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    stopped_early: bool
    suggestions: dict

    def to_dict(self) -> dict:
        return asdict(self)


def lr_ramp(config: LRFinderConfig) -> np.ndarray:
    """The ``num_steps`` rates of the test, from ``start_lr`` to ``end_lr`` inclusive."""
    if config.ramp == "linear":
        return np.linspace(config.start_lr, config.end_lr, config.num_steps)
    return np.geomspace(config.start_lr, config.end_lr, config.num_steps)


def smooth_losses(losses: Sequence[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average: ``avg_i / (1 - beta**(i+1))``.

    Without the correction the average starts near 0 (it is initialised at 0) and the early
    curve would be meaningless.
    """
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def suggest_lrs(lrs: Sequence[float], smoothed: Sequence[float], config: LRFinderConfig = LRFinderConfig()) -> dict:
    """The suggestions described in the module doc, from a (possibly truncated) smoothed curve."""
    keys = ("steepest_lr", "min_loss_lr", "min_div_10_lr", "one_cycle_max_lr", "one_cycle_base_lr",
            "cyclic_base_lr", "cyclic_max_lr", "valley_lr")
    none = dict.fromkeys(keys)
    if len(smoothed) < 3:
        return none
    loss = np.asarray(smoothed, dtype=np.float64)
    log_lr = np.log(np.asarray(lrs[:len(loss)], dtype=np.float64))
    lowest = int(np.argmin(loss))
    if lowest == 0:
        return none
    slope = np.gradient(loss, log_lr)
    skip = min(max(1, len(loss) // 10), lowest)   # the smoothing's warm-up is too noisy to judge slopes
    steepest = float(np.exp(log_lr[skip + int(np.argmin(slope[skip:lowest + 1]))]))
    min_loss = float(np.exp(log_lr[lowest]))
    min_div_10 = min_loss / 10
    max_lr = math.sqrt(steepest * min_div_10)
    return {"steepest_lr": steepest, "min_loss_lr": min_loss, "min_div_10_lr": min_div_10,
            "one_cycle_max_lr": max_lr, "one_cycle_base_lr": max_lr / config.one_cycle_divisor,
            "cyclic_base_lr": max_lr / config.cyclic_divisor, "cyclic_max_lr": max_lr,
            "valley_lr": valley_lr(lrs[:len(loss)], loss.tolist())}


def valley_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The middle of the longest falling stretch of the curve (see the module doc), or None.

    ``run[i]`` is the length of the longest strictly falling sequence of points ending at ``i``;
    the valley runs from where the longest such sequence starts to where it ends, so a bump of
    noise inside a long descent does not cut it short."""
    n = len(smoothed)
    if n < 3:
        return None
    run, start = [1] * n, list(range(n))
    for i in range(n):
        for j in range(i):
            if smoothed[j] > smoothed[i] and run[j] + 1 > run[i]:
                run[i], start[i] = run[j] + 1, start[j]
    end = max(range(n), key=lambda i: (run[i], -i))
    if run[end] < 2:
        return None
    return float(math.exp((math.log(lrs[start[end]]) + math.log(lrs[end])) / 2))


def divergence_warning(result: LRFinderResult, config: LRFinderConfig) -> str | None:
    """A warning when the loss never diverged in the range: the minimum then sits at its end."""
    if result.stopped_early or not result.lrs:
        return None
    return (f"warning: the loss never diverged up to lr {result.lrs[-1]:.4g} (--end-lr {config.end_lr:g}): the "
            f"minimum is only the end of the range, so the suggestions that read it understate; raise --end-lr")


def lr_range_test(model: nn.Module, optimizer: torch.optim.Optimizer, batch_loss: Callable[[], Tensor],
                  config: LRFinderConfig = LRFinderConfig(), *, lr_scales: Sequence[float] | None = None,
                  progress: Callable[[str, int, int], None] | None = None,
                  loss_scale: float = 1.0) -> LRFinderResult:
    """Run the range test on ``model`` with ``optimizer``; ``batch_loss()`` gives the next batch's loss.

    Each step sets every group's lr (times its entry in ``lr_scales``, default 1), computes the
    loss, steps, and reads the loss back (one sync per step: the test is not timed). Stops early
    on a non-finite loss or divergence. The model's parameters and buffers and the optimizer's
    state are restored exactly at the end, even if ``batch_loss`` raises. ``loss_scale``: fp16's
    static scale (:mod:`~speedrun.training.precision`), undone on the gradients before each step.
    """
    scales = list(lr_scales) if lr_scales is not None else [1.0] * len(optimizer.param_groups)
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    lrs, losses = [], []
    stopped_early = False
    best, average = math.inf, 0.0
    ramp = lr_ramp(config).tolist()
    try:
        for step, lr in enumerate(ramp, start=1):
            if progress is not None:
                progress(f"LR range test at lr {lr:.3g}, step", step, len(ramp))
            _set_lr(optimizer, lr, scales)
            loss = batch_loss()
            scaled_backward(loss, loss_scale, optimizer.param_groups)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
            if not math.isfinite(value):
                stopped_early = True
                break
            lrs.append(lr)
            losses.append(value)
            average = config.beta * average + (1 - config.beta) * value
            smoothed = average / (1 - config.beta ** len(losses))   # as smooth_losses, incrementally
            if len(losses) > 1 and smoothed > config.diverge_factor * best:
                stopped_early = True
                break
            best = min(best, smoothed)
    finally:
        with torch.no_grad():
            model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
    smoothed_curve = smooth_losses(losses, config.beta)
    return LRFinderResult(tuple(lrs), tuple(losses), tuple(smoothed_curve), stopped_early,
                          suggest_lrs(lrs, smoothed_curve, config))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float, scales: Sequence[float]) -> None:
    for group, scale in zip(optimizer.param_groups, scales):
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lr * scale)
        else:
            group["lr"] = lr * scale


def recipe_range_test(recipe: TrainingSetup, data: DeviceData, *, seed: int = 0,
                      config: LRFinderConfig = LRFinderConfig(), compile_model: bool = False,
                      progress: Callable[[str, int, int], None] | None = None,
                  loss_scale: float = 1.0) -> LRFinderResult:
    """The range test for ``recipe`` as it trains: its model, init, parameter groups, optimizer,
    batch size, augmentation and label smoothing (momentum is held at the optimizer config's)."""
    trainer = Trainer(recipe.model, data, augment=recipe.augment, optimizer=recipe.optimizer, train=recipe.train,
                      compile_model=compile_model)
    trainer.initialize(seed)
    start = torch.full((1,), config.start_lr, dtype=torch.float32, device=data.device)
    scheduled = build_optimizer(trainer.param_groups(), recipe.optimizer, start)
    gen = torch.Generator(device=data.device).manual_seed(seed)
    batches = _endless_batches(len(data.train_images), recipe.train.batch_size, gen)

    def batch_loss() -> Tensor:
        indices = next(batches)
        params = trainer.augment_params(gen, indices, epoch=1, first_flips=None)
        batch, step_params = trainer.step_input(data.train_images, indices, params)
        return trainer.batch_loss(batch, data.train_labels[indices], step_params)[0]   # the training step's loss

    trainer.model.train()
    return lr_range_test(trainer.model, scheduled.optimizer, batch_loss, config, lr_scales=scheduled.lr_scales,
                         progress=progress, loss_scale=static_loss_scale(recipe.train.amp_dtype, recipe.train.batch_size))


def _endless_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[Tensor]:
    """Full batches from a fresh permutation each pass over the data, for as long as asked."""
    while True:
        order = batch_order(n, gen)
        yield from order[:n - n % batch_size].view(-1, batch_size)
