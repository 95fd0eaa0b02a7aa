"""One seeded training run on data already on the device: the hot loop, timed and evaluated.

The loop is kept short on purpose. Inside an epoch nothing reads back to the host: batches
come from a device permutation, augmentation runs on the device, the optimizer takes each
step's learning rate from the device schedule, and the running loss/accuracy accumulate in
device tensors. The host syncs once per epoch, to print a line and check the target.

Timer rule (``speedrun.instruments.timing.TIMER_RULE``, written into every record): time covers the
run's initialization (a data-dependent init such as patch whitening is part of a run's cost),
every training step and every evaluation needed to establish the target, measured with CUDA
events on a GPU (``perf_counter`` on CPU). Moving the dataset to the device and the one-time
rehearsal (compilation and first use) are measured separately and are not in it.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from speedrun.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    AugmentConfig,
    AugmentParams,
    apply_augment,
    batch_order,
    jitter_colour,
    normalize,
    normalize_by,
    normalize_constants,
    sample_augment_params,
)
from speedrun.data.device_data import DeviceData
from speedrun.data.fused_input import augment_normalize
from speedrun.instruments.telemetry import NvmlSampler
from speedrun.instruments.timing import Stopwatch, synchronize
from speedrun.models.protocol import ModelConfig
from speedrun.parameters import OptimizerConfig, ParamGroup
from speedrun.training.config import TrainConfig
from speedrun.training.cuda_graph import GraphedStep, check_cuda_graph_device
from speedrun.training.evaluation import evaluate
from speedrun.training.hooks import RunHooks, RunState
from speedrun.training.optimizers import ScheduledOptimizer, build_optimizer, merge_equal_groups
from speedrun.training.precision import autocast_for, scaled_backward, static_loss_scale
from speedrun.training.run_result import EpochLog, RunResult


class Extension(Protocol):
    """A recipe's optional phase or behaviour, as data; ``make`` builds its hooks for one run."""

    def make(self, trainer: Trainer, optimizer: ScheduledOptimizer) -> RunHooks: ...

    # Optional: ``params_apart(trainer) -> list[Tensor]``, the tensors whose parameter group
    # ``make`` edits alone, so the trainer does not merge that group with an equal one.


class Trainer:
    """Trains seeded runs of one recipe on one dataset; the model is built and compiled once.

    Reusing one (re-initialized) model across runs means ``torch.compile`` traces once, and
    the rehearsal can exercise the compiled code without training any measured model.
    The model config (:class:`~speedrun.models.protocol.ModelConfig`) builds the network,
    initializes it from a seed (possibly from the data, like fast94's whitening) and groups its
    parameters.
    """

    def __init__(self, model_config: ModelConfig, data: DeviceData, *, augment: AugmentConfig,
                 optimizer: OptimizerConfig, train: TrainConfig, compile_model: bool,
                 extensions: Sequence[Extension] = (), compile_backend: str | Callable = "inductor",
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.device = data.device
        self.model_config = model_config
        # Module.to takes memory_format at run time; torch's type stubs do not say so.
        self.model = model_config.build().to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Static shapes and one graph: every batch shape is compiled once in the rehearsal (a
        # dynamic batch dimension would cost a recompile and slower kernels), and a graph break
        # is an error rather than a silent slowdown.
        check_cuda_graph_device(train.cuda_graph, self.device)
        mode = None if train.compile_mode == "default" else train.compile_mode
        self.forward: Callable[[Tensor], Tensor] = (
            torch.compile(self.model, backend=compile_backend, dynamic=False, fullgraph=True, mode=mode)
            if compile_model else self.model)
        # A training step's graph holds the augmentation, the normalization, the forward, the
        # loss and the hit count (and, through autograd, their backward), so they run as a few
        # fused kernels, not op by op; only the random draws and the batch's gather are outside
        # it (with the input kernel, its Triton pass is outside too). Evaluation uses ``forward``.
        self.batch_loss: Callable[[Tensor, Tensor, AugmentParams | None], tuple[Tensor, Tensor | None]] = (
            torch.compile(self._batch_loss, backend=compile_backend, dynamic=False, fullgraph=True, mode=mode)
            if compile_model else self._batch_loss)
        self._scale, self._shift = normalize_constants(CIFAR10_MEAN, CIFAR10_STD, self.device)
        self.data, self.augment, self.optimizer_config, self.config = data, augment, optimizer, train
        self.extensions = tuple(extensions)
        self.loss_scale = static_loss_scale(train.amp_dtype, train.batch_size)   # 1 unless fp16 (precision module)
        self.progress = progress          # (what, done, total) after each step: for long CPU epochs only
        if len(data.train_images) < train.batch_size:
            raise ValueError(f"batch_size {train.batch_size} is larger than the training set "
                             f"({len(data.train_images)} images): lower --batch-size or --train-subset")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.train_images) // self.config.batch_size

    @property
    def total_steps(self) -> int:
        """The run's training steps (a fractional epoch budget rounded up to a step)."""
        return self.config.total_steps(self.steps_per_epoch)

    @property
    def last_epoch(self) -> int:
        """The run's last epoch, 1-based; in a fractional budget it is partial."""
        return self.config.epochs_run(self.steps_per_epoch)

    def param_groups(self) -> list[ParamGroup]:
        """The model's parameter groups, one per role."""
        return self.model_config.param_groups(self.model, self.optimizer_config)

    def optimizer_groups(self) -> list[ParamGroup]:
        """The groups the optimizer gets: :meth:`param_groups` with equal ones merged, except
        those the extensions edit alone (their ``params_apart``)."""
        apart = [t for ext in self.extensions for t in getattr(ext, "params_apart", lambda _: [])(self)]
        return merge_equal_groups(self.param_groups(), apart)

    def initialize(self, seed: int) -> None:
        self.model_config.initialize(self.model, seed, self.data.train_images)

    def evaluate(self, model: Callable[[Tensor], Tensor] | None = None, images: Tensor | None = None,
                 labels: Tensor | None = None) -> Tensor:
        """Test accuracy (device scalar) of ``model`` (default: the compiled model) in eval mode."""
        self.model.eval()
        return evaluate(model or self.forward, self.data.test_images if images is None else images,
                        self.data.test_labels if labels is None else labels,
                        batch_size=self.config.eval_batch_size, tta=self.config.tta, amp_dtype=self.config.amp_dtype,
                        tta_share=self.config.tta_share)

    def start_run(self, seed: int, lr: Tensor, momentum: Tensor | None = None) -> RunState:
        """A fresh optimizer, the extensions' hooks and the seeded generator; the weights are not touched."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        opt = build_optimizer(self.optimizer_groups(), self.optimizer_config, lr, momentum, capturable=self.config.cuda_graph)
        hooks = RunHooks.combine([ext.make(self, opt) for ext in self.extensions])
        first_flips = torch.rand(len(self.data.train_images), generator=gen, device=self.device) < 0.5
        return RunState(opt, hooks, gen, first_flips, torch.zeros((), device=self.device),
                        torch.zeros((), dtype=torch.long, device=self.device),
                        self.graphed_step(opt) if self.config.cuda_graph else None)

    def rehearse(self, lr: Tensor, momentum: Tensor | None = None, steps: int = 3) -> float:
        """A rehearsal: a miniature run on random pixels, so the first measured run pays no first-use cost.

        It initializes the model as the recipe does (fast94's whitening, with its float64
        eigendecomposition), takes ``steps`` steps with every extension's hooks, ends an epoch
        (SWA averaging, snapshots), evaluates at every batch shape the measured evaluations use,
        and runs the extensions' final work: compilation, kernel selection and allocation all
        happen here. Returns the seconds it took. Each measured run re-initializes the model,
        so the rehearsal trains no measured model. (Not to be confused with a learning-rate
        warm-up, which is part of a schedule.)
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
        self.end_epoch(run, self.last_epoch, evaluate=True, eval_images=_rehearsal_eval_size(
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
        return jitter_colour(normalize(apply_augment(source[indices], params, self.augment), CIFAR10_MEAN, CIFAR10_STD),
                             params, self.augment)

    def step_input(self, source: Tensor, indices: Tensor, params: AugmentParams) -> tuple[Tensor, AugmentParams | None]:
        """What :meth:`batch_loss` takes: the gathered uint8 batch and its draws, or, with the
        input kernel, the kernel's finished batch and no draws left to apply."""
        if self.config.input_kernel:
            return self.input_batch(source, indices, params), None
        return source[indices], params

    def _batch_loss(self, batch: Tensor, labels: Tensor, params: AugmentParams | None) -> tuple[Tensor, Tensor | None]:
        """Augment and normalize ``batch`` (unless ``params`` is None: it is ready), forward, loss;
        returns (loss, correct count, None when not counted). Compiled as one graph where the model is."""
        if params is not None:
            x = jitter_colour(normalize_by(apply_augment(batch, params, self.augment), self._scale, self._shift),
                              params, self.augment)
        else:
            x = batch
        with autocast_for(self.device, self.config.amp_dtype):
            logits = self.model(x)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing)
        return loss, (logits.argmax(1) == labels).sum() if self.config.train_accuracy else None

    def train_step(self, batch: Tensor, labels: Tensor, params: AugmentParams | None, opt: ScheduledOptimizer, *,
                   zero_grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """The step's graph (:meth:`batch_loss`), backward, optimizer step; returns (loss, correct
        count) as device tensors. A CUDA graph keeps the gradients (``zero_grad=False``): each
        replay writes them afresh."""
        loss, hits = self.batch_loss(batch, labels, params)
        scaled_backward(loss, self.loss_scale, opt.optimizer.param_groups)
        opt.step()
        if zero_grad:
            opt.zero_grad()
        return loss.detach(), hits

    def graphed_step(self, opt: ScheduledOptimizer) -> GraphedStep:
        """The whole step, from the batch's indices and draws, as a CUDA graph (``--cuda-graph``)."""
        def body(images: Tensor, labels: Tensor, indices: Tensor, params: AugmentParams) -> tuple[Tensor, Tensor | None]:
            batch, step_params = self.step_input(images, indices, params)
            return self.train_step(batch, labels[indices], step_params, opt, zero_grad=False)
        return GraphedStep(body, self.model, opt)

    def train_steps(self, run: RunState, images: Tensor, labels: Tensor, batches: Tensor, epoch: int) -> None:
        """One step per row of ``batches`` (indices into ``images``), hooks included; device work only."""
        self.model.train()
        for step, indices in enumerate(batches, start=1):
            params = self.augment_params(run.generator, indices, epoch, run.first_flips)
            if run.graphed_step is not None:
                loss, hits = run.graphed_step(images, labels, indices, params)
            else:
                batch, step_params = self.step_input(images, indices, params)
                loss, hits = self.train_step(batch, labels[indices], step_params, run.optimizer)
            run.loss_sum += loss
            if hits is not None:
                run.correct += hits
            for fn in run.hooks.after_step:
                fn()
            if self.progress is not None:
                self.progress(f"epoch {epoch}, step", step, len(batches))

    def train_epoch(self, run: RunState, epoch: int) -> None:
        """One epoch of steps over a fresh permutation of the training set, entirely on the device
        (a fractional budget's last epoch takes the permutation's first batches only)."""
        data, batch_size = self.data, self.config.batch_size
        steps = self.config.steps_in_epoch(epoch, self.steps_per_epoch)
        order = batch_order(len(data.train_images), run.generator)[: steps * batch_size]
        run.loss_sum.zero_()
        run.correct.zero_()
        self.train_steps(run, data.train_images, data.train_labels, order.view(-1, batch_size), epoch)

    def end_epoch(self, run: RunState, epoch: int, *, evaluate: bool, eval_images: int | None = None) -> Tensor | None:
        """Epoch-end hooks, the evaluation if due, and after the last epoch the extensions' final word.

        Returns the test accuracy as a device scalar (None when not evaluated); no host sync.
        ``eval_images`` evaluates only that many test images (the rehearsal's shapes).
        """
        for fn in run.hooks.after_epoch:
            fn(epoch)
        accuracy = None
        if evaluate:
            model = run.hooks.eval_model() if run.hooks.eval_model else self.forward
            n = eval_images or len(self.data.test_images)
            accuracy = self.evaluate(model, self.data.test_images[:n], self.data.test_labels[:n])
        if epoch == self.last_epoch and run.hooks.finish is not None:
            finished = run.hooks.finish()
            if finished is not None:
                run.single_accuracy, accuracy = accuracy, finished
        return accuracy

    def read_epoch(self, run: RunState, epoch: int, accuracy: Tensor | None, elapsed_s: float) -> EpochLog:
        """The epoch's one host sync: lr, loss, training and test accuracy, read in one transfer."""
        values = [run.optimizer.current_lr().float(), run.loss_sum.float(), run.correct.float()]
        lr, loss_sum, correct, *test = torch.stack(values + ([accuracy.float()] if accuracy is not None else [])).tolist()
        steps = self.config.steps_in_epoch(epoch, self.steps_per_epoch)
        loss = loss_sum / steps
        return EpochLog(epoch=epoch, lr=lr, train_loss=loss if math.isfinite(loss) else None,
                        train_acc=correct / (steps * self.config.batch_size) if self.config.train_accuracy else None,
                        test_acc=test[0] if test else None,
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
        last = self.last_epoch
        for epoch in range(1, last + 1):
            stopwatch.start()
            self.train_epoch(run, epoch)
            accuracy = self.end_epoch(run, epoch, evaluate=epoch % cfg.eval_every == 0 or epoch == last)
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
        result.extension = self._extension_report(run, result)
        return result

    def _extension_report(self, run: RunState, result: RunResult) -> dict:
        """After the timed part: what the extensions did, and the final model's accuracy against the
        trained model's own (their gain), when an extension replaced the final accuracy."""
        report = {k: v for fn in run.hooks.report for k, v in fn().items()}
        if run.single_accuracy is not None and result.final_test_acc is not None:
            single = float(run.single_accuracy)
            report.update(single_model_acc=single, final_acc=result.final_test_acc,
                          gain=result.final_test_acc - single)
        return report


def _rehearsal_eval_size(test_images: int, batch_size: int) -> int:
    """How many test images give every batch shape a full evaluation uses: a full batch and the remainder."""
    if test_images <= batch_size:
        return test_images
    return batch_size + test_images % batch_size
