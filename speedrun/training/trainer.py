"""One seeded training run on data already on the device: the hot loop, timed and evaluated.

The loop is kept short on purpose. Inside an epoch nothing reads back to the host: batches
come from a device permutation, augmentation runs on the device, the optimizer takes each
step's learning rate from the device schedule, and the running loss/accuracy accumulate in
device tensors. The host syncs once per epoch, to print a line and check the target.

Timer rule (also written into every record): time covers the run's initialization (a
data-dependent init such as patch whitening is part of a run's cost), every training step and
every evaluation needed to establish the target, measured with CUDA events on a GPU
(``perf_counter`` on CPU). Moving the dataset to the device and the one-time compile
warm-up are measured separately and are not in it.
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speedrun.kernels.augment_normalize import augment_normalize
from speedrun.data.augment import (CIFAR10_MEAN, CIFAR10_STD, AugmentConfig, AugmentParams, apply_augment, batch_order,
                              normalize, sample_augment_params)
from speedrun.data.cifar10 import Cifar10
from speedrun.bench.telemetry import NvmlSampler
from speedrun.training.optimizers import OptimizerConfig, ParamGroup, ScheduledOptimizer, build_optimizer
from speedrun.bench.timing import Stopwatch, synchronize

TIMER_RULE = (
    "time covers the run's (re-)initialization, every training step and every evaluation needed "
    "to establish the target, "
    "measured with CUDA events on a GPU (perf_counter on CPU); moving the dataset to the device "
    "and the one-time torch.compile warm-up are measured separately and excluded"
)


TTA_MODES = ("none", "flip", "multi")
FLIP_MODES = ("random", "alternate")


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains and when it is evaluated."""

    epochs: int = 24
    batch_size: int = 512
    label_smoothing: float = 0.0
    tta: str = "flip"             # test-time views: "none", "flip" (image + mirror) or "multi" (+ 1-px shifts)
    flip_mode: str = "random"     # "random": each image flipped with p=1/2 every epoch; "alternate":
                                  # a random first epoch, then each image flipped in every other epoch
    eval_every: int = 1           # evaluate every k-th epoch (and always after the last)
    eval_batch_size: int = 1000
    stop_at_target: bool = True   # end a run at the first evaluation that reaches the target
    input_kernel: bool = False    # build each batch with kernels/augment_normalize (one fused pass)
                                  # instead of the reference ops; see kernels/README.md

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {self.tta!r}")
        if self.flip_mode not in FLIP_MODES:
            raise ValueError(f"flip_mode must be one of {', '.join(FLIP_MODES)}, got {self.flip_mode!r}")


@dataclass
class DeviceData:
    """CIFAR-10 on the device as uint8 NCHW, moved there once."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor

    @classmethod
    def from_cifar(cls, data: Cifar10, device: torch.device) -> "DeviceData":
        def images(a) -> Tensor:
            return torch.from_numpy(a).to(device).permute(0, 3, 1, 2).contiguous()

        def labels(a) -> Tensor:
            return torch.from_numpy(a).to(device=device, dtype=torch.long)

        return cls(images(data.train_images), labels(data.train_labels),
                   images(data.test_images), labels(data.test_labels))

    @property
    def device(self) -> torch.device:
        return self.train_images.device


@dataclass
class EpochLog:
    epoch: int
    lr: float
    train_loss: float | None            # None: not finite (the run diverged)
    train_acc: float
    test_acc: float | None
    elapsed_s: float


@dataclass
class RunResult:
    seed: int
    status: str = "ok"                  # "ok", "diverged" or "failed"
    error: str | None = None
    epochs: list[EpochLog] = field(default_factory=list)
    final_test_acc: float | None = None
    reached_target: bool = False
    time_to_target_s: float | None = None
    train_time_s: float = 0.0
    nvml: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunHooks:
    """Behaviour an extension adds to one run. Device-side hooks must not sync with the host.

    after_step:  device work after each optimizer step (EMA, lookahead).
    after_epoch: device work at an epoch's end, before its evaluation (SWA averaging,
                 saving a snapshot); gets the 1-based epoch.
    after_log:   host work after the epoch's one sync, with its log (reduce-on-plateau).
    eval_model:  which function to evaluate with (e.g. EMA or SWA weights); None: the model.
    finish:      after the last epoch, inside the timed part: returns a device accuracy that
                 replaces the final one (SWA after its BN update, a snapshot ensemble), or None.
    """

    after_step: Sequence[Callable[[], None]] = ()
    after_epoch: Sequence[Callable[[int], None]] = ()
    after_log: Sequence[Callable[[int, "EpochLog"], None]] = ()
    eval_model: Callable[[], Callable[[Tensor], Tensor]] | None = None
    finish: Callable[[], Tensor | None] | None = None

    @classmethod
    def combine(cls, hooks: Sequence["RunHooks"]) -> "RunHooks":
        """One set of hooks for a run, flattened once, in extension order.

        Step, epoch and log hooks all run, in order. For ``eval_model`` and ``finish`` the last
        extension that sets one wins: every ``finish`` runs (each may have work to do), and the
        accuracy of the last one that returns a value replaces the final evaluation.
        """
        finishes = [h.finish for h in hooks if h.finish is not None]

        def finish_all() -> Tensor | None:
            accuracy = None
            for fn in finishes:
                returned = fn()
                accuracy = accuracy if returned is None else returned
            return accuracy

        return cls(after_step=tuple(fn for h in hooks for fn in h.after_step),
                   after_epoch=tuple(fn for h in hooks for fn in h.after_epoch),
                   after_log=tuple(fn for h in hooks for fn in h.after_log),
                   eval_model=next((h.eval_model for h in reversed(hooks) if h.eval_model), None),
                   finish=finish_all if finishes else None)


@dataclass
class RunState:
    """What one run carries from epoch to epoch, all on the device but the hooks."""

    optimizer: ScheduledOptimizer
    hooks: RunHooks
    generator: torch.Generator
    first_flips: Tensor               # each image's flip in the first epoch (alternating flips)
    loss_sum: Tensor                  # this epoch's summed training loss
    correct: Tensor                   # this epoch's correct training predictions


class Extension(Protocol):
    """A recipe's optional phase or behaviour, as data; ``make`` builds its hooks for one run."""

    def make(self, trainer: "Trainer", optimizer: ScheduledOptimizer) -> RunHooks: ...


class ModelConfig(Protocol):
    """What a recipe's model config provides: the network, its init, its parameter groups."""

    def build(self) -> nn.Module: ...


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (tensor cores); full precision elsewhere, where bf16 is slow."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def reinitialize(model: nn.Module, seed: int) -> None:
    """Fresh weights and BN statistics from ``seed``, in place, so a compiled model is reused."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()


def default_param_groups(model: nn.Module, optimizer: OptimizerConfig) -> list[ParamGroup]:
    return [ParamGroup([p for p in model.parameters() if p.requires_grad])]


def tta_views(x: Tensor, mode: str) -> list[tuple[float, Tensor]]:
    """Weighted views of a normalized batch for test-time augmentation.

    "flip": the image and its mirror, equally weighted. "multi": those two at weight 1/4
    each, plus the mirror pair of two 1-pixel diagonal shifts (reflect-padded) at 1/8 each.
    """
    if mode == "none":
        return [(1.0, x)]
    views = [(0.5, x), (0.5, x.flip(-1))]
    if mode == "flip":
        return [(wt, _like(v, x)) for wt, v in views]
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]
    views = [(0.5 * wt, v) for wt, v in views] + [(0.125, v) for s in shifted for v in (s, s.flip(-1))]
    return [(wt, _like(v, x)) for wt, v in views]


def _like(view: Tensor, x: Tensor) -> Tensor:
    """``view`` with ``x``'s memory layout: a compiled model with static shapes sees one stride
    pattern for every view (a sliced view's strides would compile a second graph)."""
    layout = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
    return view.contiguous(memory_format=layout)


@torch.no_grad()
def evaluate(model: Callable[[Tensor], Tensor], images: Tensor, labels: Tensor, *, batch_size: int,
             tta: str = "flip") -> Tensor:
    """Test accuracy as a device scalar (no sync), from the weighted logits of the ``tta`` views."""
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), batch_size):
        logits = predict(model, images[start:start + batch_size], tta)
        correct += (logits.argmax(1) == labels[start:start + batch_size]).sum()
    return correct.float() / len(images)


@torch.no_grad()
def predict(model: Callable[[Tensor], Tensor], images_u8: Tensor, tta: str = "flip") -> Tensor:
    """Float32 logits of a uint8 batch under the ``tta`` views (used by ensembles too)."""
    x = normalize(images_u8, CIFAR10_MEAN, CIFAR10_STD)
    with autocast_for(images_u8.device):
        return sum(weight * model(view).float() for weight, view in tta_views(x, tta))


class Trainer:
    """Trains seeded runs of one recipe on one dataset; the model is built and compiled once.

    Reusing one (re-initialized) model across runs means ``torch.compile`` traces once, and
    the warm-up can exercise the compiled code without training any measured model.
    The model config may offer ``initialize(model, seed, train_images)`` (e.g. a data-dependent
    first layer) and ``param_groups(model, optimizer_config)``; defaults are a plain re-init
    and one group.
    """

    def __init__(self, model_config: ModelConfig, data: DeviceData, *, augment: AugmentConfig,
                 optimizer: OptimizerConfig, train: TrainConfig, compile_model: bool,
                 extensions: Sequence[Extension] = (), compile_backend: str | Callable = "inductor") -> None:
        self.device = data.device
        self.model_config = model_config
        self.model = model_config.build().to(self.device, memory_format=torch.channels_last)
        # Static shapes and one graph: every batch shape is compiled once in the warm-up (a
        # dynamic batch dimension would cost a recompile and slower kernels), and a graph break
        # is an error rather than a silent slowdown.
        self.forward: Callable[[Tensor], Tensor] = (
            torch.compile(self.model, backend=compile_backend, dynamic=False, fullgraph=True)
            if compile_model else self.model)
        self.data, self.augment, self.optimizer_config, self.config = data, augment, optimizer, train
        self.extensions = tuple(extensions)
        if len(data.train_images) < train.batch_size:
            raise ValueError(f"batch_size {train.batch_size} is larger than the training set "
                             f"({len(data.train_images)} images): lower --batch-size or --train-subset")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.train_images) // self.config.batch_size

    def param_groups(self) -> list[ParamGroup]:
        groups = getattr(self.model_config, "param_groups", None)
        return groups(self.model, self.optimizer_config) if groups else default_param_groups(self.model, self.optimizer_config)

    def initialize(self, seed: int) -> None:
        init = getattr(self.model_config, "initialize", None)
        if init is None:
            reinitialize(self.model, seed)
        else:
            init(self.model, seed, self.data.train_images)

    def evaluate(self, model: Callable[[Tensor], Tensor] | None = None, images: Tensor | None = None,
                 labels: Tensor | None = None) -> Tensor:
        """Test accuracy (device scalar) of ``model`` (default: the compiled model) in eval mode."""
        self.model.eval()
        return evaluate(model or self.forward, self.data.test_images if images is None else images,
                        self.data.test_labels if labels is None else labels,
                        batch_size=self.config.eval_batch_size, tta=self.config.tta)

    def start_run(self, seed: int, lr: Tensor, momentum: Tensor | None = None) -> RunState:
        """A fresh optimizer, the extensions' hooks and the seeded generator; the weights are not touched."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        opt = build_optimizer(self.param_groups(), self.optimizer_config, lr, momentum)
        hooks = RunHooks.combine([ext.make(self, opt) for ext in self.extensions])
        first_flips = torch.rand(len(self.data.train_images), generator=gen, device=self.device) < 0.5
        return RunState(opt, hooks, gen, first_flips, torch.zeros((), device=self.device),
                        torch.zeros((), dtype=torch.long, device=self.device))

    def warmup(self, lr: Tensor, momentum: Tensor | None = None, steps: int = 3) -> float:
        """A miniature run on random pixels, so the first measured run pays no first-use cost.

        It initializes the model as the recipe does (fast94's whitening, with its float64
        eigendecomposition), takes ``steps`` steps with every extension's hooks, ends an epoch
        (SWA averaging, snapshots), evaluates at every batch shape the measured evaluations use,
        and runs the extensions' final work: compilation, kernel selection and allocation all
        happen here. Returns the seconds it took. Each measured run re-initializes the model,
        so the warm-up trains no measured model.
        """
        stopwatch = Stopwatch(self.device)
        stopwatch.start()
        self.initialize(0)
        run = self.start_run(12345, lr, momentum)
        n = self.config.batch_size
        fake = torch.randint(0, 256, (n, *self.data.train_images.shape[1:]), generator=run.generator,
                             device=self.device, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=run.generator, device=self.device)
        self.train_steps(run, fake, labels, torch.arange(n, device=self.device).expand(steps, n), epoch=1)
        self.end_epoch(run, self.config.epochs, evaluate=True, eval_images=_warmup_eval_size(
            len(self.data.test_images), self.config.eval_batch_size))
        synchronize(self.device)
        stopwatch.stop()
        return stopwatch.elapsed_s

    def augment_params(self, gen: torch.Generator, indices: Tensor, epoch: int,
                       first_flips: Tensor | None) -> AugmentParams:
        """This batch's random crop, flip and cutout draws; with alternating flips, the flip mask is replaced."""
        params = sample_augment_params(len(indices), self.augment, gen, image_size=self.data.train_images.shape[-1])
        if self.config.flip_mode == "alternate" and first_flips is not None and self.augment.flip:
            params = dataclasses.replace(params, flip=first_flips[indices] ^ (epoch % 2 == 0))
        return params

    def input_batch(self, source: Tensor, indices: Tensor, params: AugmentParams) -> Tensor:
        """The normalized, augmented batch ``source[indices]``, channels_last, on the device."""
        if self.config.input_kernel:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32  # autocast runs bf16 anyway
            return augment_normalize(source, indices, params, self.augment, CIFAR10_MEAN, CIFAR10_STD, dtype=dtype)
        return normalize(apply_augment(source[indices], params, self.augment), CIFAR10_MEAN, CIFAR10_STD)

    def train_step(self, x: Tensor, labels: Tensor, opt: ScheduledOptimizer) -> tuple[Tensor, Tensor]:
        """Forward, backward, optimizer step; returns (loss, correct count) as device tensors."""
        with autocast_for(self.device):
            logits = self.forward(x)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.detach(), (logits.argmax(1) == labels).sum()

    def train_steps(self, run: RunState, images: Tensor, labels: Tensor, batches: Tensor, epoch: int) -> None:
        """One step per row of ``batches`` (indices into ``images``), hooks included; device work only."""
        self.model.train()
        for indices in batches:
            params = self.augment_params(run.generator, indices, epoch, run.first_flips)
            loss, hits = self.train_step(self.input_batch(images, indices, params), labels[indices], run.optimizer)
            run.loss_sum += loss
            run.correct += hits
            for fn in run.hooks.after_step:
                fn()

    def train_epoch(self, run: RunState, epoch: int) -> None:
        """One epoch of steps over a fresh permutation of the training set, entirely on the device."""
        data, batch_size = self.data, self.config.batch_size
        order = batch_order(len(data.train_images), run.generator)[: self.steps_per_epoch * batch_size]
        run.loss_sum.zero_()
        run.correct.zero_()
        self.train_steps(run, data.train_images, data.train_labels, order.view(-1, batch_size), epoch)

    def end_epoch(self, run: RunState, epoch: int, *, evaluate: bool, eval_images: int | None = None) -> Tensor | None:
        """Epoch-end hooks, the evaluation if due, and after the last epoch the extensions' final word.

        Returns the test accuracy as a device scalar (None when not evaluated); no host sync.
        ``eval_images`` evaluates only that many test images (the warm-up's shapes).
        """
        for fn in run.hooks.after_epoch:
            fn(epoch)
        accuracy = None
        if evaluate:
            model = run.hooks.eval_model() if run.hooks.eval_model else self.forward
            n = eval_images or len(self.data.test_images)
            accuracy = self.evaluate(model, self.data.test_images[:n], self.data.test_labels[:n])
        if epoch == self.config.epochs and run.hooks.finish is not None:
            finished = run.hooks.finish()
            accuracy = accuracy if finished is None else finished
        return accuracy

    def read_epoch(self, run: RunState, epoch: int, accuracy: Tensor | None, elapsed_s: float) -> EpochLog:
        """The epoch's one host sync: lr, loss, training and test accuracy, read in one transfer."""
        values = [run.optimizer.current_lr().float(), run.loss_sum.float(), run.correct.float()]
        lr, loss_sum, correct, *test = torch.stack(values + ([accuracy.float()] if accuracy is not None else [])).tolist()
        steps = self.steps_per_epoch
        loss = loss_sum / steps
        return EpochLog(epoch=epoch, lr=lr, train_loss=loss if math.isfinite(loss) else None,
                        train_acc=correct / (steps * self.config.batch_size), test_acc=test[0] if test else None,
                        elapsed_s=elapsed_s)

    def run(self, seed: int, lr: Tensor, momentum: Tensor | None = None, *, target: float | None = None,
            log: Callable[[EpochLog], None] = lambda _: None) -> RunResult:
        """Train one run from ``seed`` under the per-step ``lr`` (and ``momentum``) schedule."""
        cfg = self.config
        stopwatch, sampler = Stopwatch(self.device), NvmlSampler(self.device)
        stopwatch.start()
        self.initialize(seed)
        stopwatch.stop()
        run = self.start_run(seed, lr, momentum)
        result = RunResult(seed=seed)
        sampler.start()
        for epoch in range(1, cfg.epochs + 1):
            stopwatch.start()
            self.train_epoch(run, epoch)
            accuracy = self.end_epoch(run, epoch, evaluate=epoch % cfg.eval_every == 0 or epoch == cfg.epochs)
            stopwatch.stop()
            entry = self.read_epoch(run, epoch, accuracy, stopwatch.elapsed_s)
            result.epochs.append(entry)
            log(entry)
            if entry.train_loss is None:       # JSON has no NaN: a diverged loss is recorded as null
                result.status, result.error = "diverged", f"non-finite training loss at epoch {epoch}"
                break
            if entry.test_acc is not None:
                result.final_test_acc = entry.test_acc
                if target is not None and entry.test_acc >= target and not result.reached_target:
                    result.reached_target, result.time_to_target_s = True, entry.elapsed_s
                    if cfg.stop_at_target:
                        break
            for fn in run.hooks.after_log:
                fn(epoch, entry)
        sampler.stop()
        result.train_time_s = stopwatch.elapsed_s
        result.nvml = sampler.summary()
        if result.status == "diverged":
            result.final_test_acc = None
        return result


def _warmup_eval_size(test_images: int, batch_size: int) -> int:
    """How many test images give every batch shape a full evaluation uses: a full batch and the remainder."""
    if test_images <= batch_size:
        return test_images
    return batch_size + test_images % batch_size
