"""One seeded training run on data already on the device: the hot loop, timed and evaluated.

The loop is kept short on purpose. Inside an epoch nothing reads back to the host: batches
come from a device permutation, augmentation runs on the device, the optimizer takes each
step's learning rate from the device schedule, and the running loss/accuracy accumulate in
device tensors. The host syncs once per epoch, to print a line and check the target.

Timer rule (also written into every record): time covers every training step and every
evaluation needed to establish the target, measured with CUDA events on a GPU
(``perf_counter`` on CPU). Moving the dataset to the device and the one-time compile
warm-up are measured separately and are not in it.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speedrun.augment import CIFAR10_MEAN, CIFAR10_STD, AugmentConfig, augment_batch, batch_order, normalize
from speedrun.data import Cifar10
from speedrun.nvml import NvmlSampler
from speedrun.optim import OptimizerConfig, ParamGroup, ScheduledOptimizer, build_optimizer
from speedrun.timing import Stopwatch

TIMER_RULE = (
    "time covers every training step and every evaluation needed to establish the target, "
    "measured with CUDA events on a GPU (perf_counter on CPU); moving the dataset to the device "
    "and the one-time torch.compile warm-up are measured separately and excluded"
)


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains and when it is evaluated."""

    epochs: int = 24
    batch_size: int = 512
    label_smoothing: float = 0.0
    tta: bool = True              # evaluate on the image and its mirror, summing logits
    eval_every: int = 1           # evaluate every k-th epoch (and always after the last)
    eval_batch_size: int = 1000
    stop_at_target: bool = True   # end a run at the first evaluation that reaches the target

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


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
    train_loss: float
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


class EpochHook(Protocol):
    """Called on the host after each epoch's evaluation (e.g. reduce-on-plateau)."""

    def __call__(self, epoch: int, log: EpochLog) -> None: ...


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


def default_param_groups(model: nn.Module) -> list[ParamGroup]:
    return [ParamGroup([p for p in model.parameters() if p.requires_grad])]


@torch.no_grad()
def evaluate(model: Callable[[Tensor], Tensor], images: Tensor, labels: Tensor, *, batch_size: int,
             tta: bool) -> Tensor:
    """Test accuracy as a device scalar (no sync); with ``tta``, logits of image + mirror are summed."""
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size], CIFAR10_MEAN, CIFAR10_STD)
        with autocast_for(images.device):
            logits = model(x)
            if tta:
                logits = logits + model(x.flip(-1))
        correct += (logits.argmax(1) == labels[start:start + batch_size]).sum()
    return correct.float() / len(images)


class Trainer:
    """Trains seeded runs of one recipe on one dataset; the model is built and compiled once.

    Reusing one (re-initialized) model across runs means ``torch.compile`` traces once, and
    the warm-up can exercise the compiled code without training any measured model.
    """

    def __init__(self, model: nn.Module, data: DeviceData, *, augment: AugmentConfig, optimizer: OptimizerConfig,
                 train: TrainConfig, compile_model: bool,
                 param_groups: Callable[[nn.Module], list[ParamGroup]] = default_param_groups) -> None:
        self.device = data.device
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.forward: Callable[[Tensor], Tensor] = torch.compile(self.model) if compile_model else self.model
        self.data, self.augment, self.optimizer_config, self.config = data, augment, optimizer, train
        self.param_groups = param_groups
        if len(data.train_images) < train.batch_size:
            raise ValueError(f"batch_size {train.batch_size} is larger than the training set "
                             f"({len(data.train_images)} images): lower --batch-size or --train-subset")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.train_images) // self.config.batch_size

    def warmup(self, lr: Tensor, steps: int = 3) -> float:
        """Run a few steps on random pixels and one evaluation, then report the seconds spent.

        This pays for tracing and compiling; the model is re-initialized before each
        measured run, so no measured model is trained by it.
        """
        stopwatch = Stopwatch(self.device)
        stopwatch.start()
        gen = torch.Generator(device=self.device).manual_seed(12345)
        fake = torch.randint(0, 256, self.data.train_images[: self.config.batch_size].shape,
                             generator=gen, device=self.device, dtype=torch.uint8)
        labels = torch.randint(0, 10, (len(fake),), generator=gen, device=self.device)
        opt = build_optimizer(self.param_groups(self.model), self.optimizer_config, lr)
        self.model.train()
        for _ in range(steps):
            self._train_step(fake, labels, opt, gen)
        self.model.eval()
        evaluate(self.forward, self.data.test_images, self.data.test_labels,
                 batch_size=self.config.eval_batch_size, tta=self.config.tta)
        stopwatch.stop()
        return stopwatch.elapsed_s

    def _train_step(self, images: Tensor, labels: Tensor, opt: ScheduledOptimizer, gen: torch.Generator):
        x = normalize(augment_batch(images, self.augment, gen), CIFAR10_MEAN, CIFAR10_STD)
        with autocast_for(self.device):
            logits = self.forward(x)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.detach(), (logits.argmax(1) == labels).sum()

    def run(self, seed: int, lr: Tensor, momentum: Tensor | None = None, *, target: float | None = None,
            log: Callable[[EpochLog], None] = lambda _: None, hooks: tuple[EpochHook, ...] = ()) -> RunResult:
        """Train one run from ``seed`` under the per-step ``lr`` (and ``momentum``) schedule."""
        cfg, data = self.config, self.data
        reinitialize(self.model, seed)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        opt = build_optimizer(self.param_groups(self.model), self.optimizer_config, lr, momentum)
        result = RunResult(seed=seed)
        stopwatch, sampler = Stopwatch(self.device), NvmlSampler(self.device)
        sampler.start()
        for epoch in range(1, cfg.epochs + 1):
            stopwatch.start()
            self.model.train()
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), dtype=torch.long, device=self.device)
            order = batch_order(len(data.train_images), gen)
            for indices in order[: self.steps_per_epoch * cfg.batch_size].view(-1, cfg.batch_size):
                loss, hits = self._train_step(data.train_images[indices], data.train_labels[indices], opt, gen)
                loss_sum += loss
                correct += hits
            evaluate_now = epoch % cfg.eval_every == 0 or epoch == cfg.epochs
            test_acc = None
            if evaluate_now:
                self.model.eval()
                test_acc = evaluate(self.forward, data.test_images, data.test_labels,
                                    batch_size=cfg.eval_batch_size, tta=cfg.tta)
            stopwatch.stop()
            # The one host sync of the epoch.
            seen = self.steps_per_epoch * cfg.batch_size
            entry = EpochLog(epoch=epoch, lr=float(opt.current_lr()), train_loss=float(loss_sum) / self.steps_per_epoch,
                             train_acc=float(correct) / seen, test_acc=None if test_acc is None else float(test_acc),
                             elapsed_s=stopwatch.elapsed_s)
            result.epochs.append(entry)
            log(entry)
            if not math.isfinite(entry.train_loss):
                result.status, result.error = "diverged", f"non-finite training loss at epoch {epoch}"
                break
            if entry.test_acc is not None:
                result.final_test_acc = entry.test_acc
                if target is not None and entry.test_acc >= target and not result.reached_target:
                    result.reached_target, result.time_to_target_s = True, entry.elapsed_s
                    if cfg.stop_at_target:
                        break
            for hook in hooks:
                hook(epoch, entry)
        sampler.stop()
        result.train_time_s = stopwatch.elapsed_s
        result.nvml = sampler.summary()
        if result.status == "diverged":
            result.final_test_acc = None
            for e in result.epochs:  # JSON has no NaN: a diverged loss is recorded as null
                if not math.isfinite(e.train_loss):
                    e.train_loss = None  # type: ignore[assignment]
        return result
