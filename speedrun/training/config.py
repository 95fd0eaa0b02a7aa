"""How a run trains and when it is evaluated: the loop's settings as data."""
from __future__ import annotations

import math
from dataclasses import dataclass

from speedrun.settings import check, setting

TTA_MODES = ("none", "flip", "multi", "selective")
FLIP_MODES = ("random", "alternate")
AMP_DTYPES = ("bf16", "fp16", "fp32")     # autocast precision on CUDA (speedrun.training.precision)
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")   # torch.compile modes that keep the step graph-capturable


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains and when it is evaluated."""

    epochs: float = setting(24, "epoch budget; a fraction trains part of the last epoch (9.9 epochs of 48 steps "
                                "are 476 steps)", low=0, low_open=True, high=10_000)
    batch_size: int = setting(512, "training batch size", low=1, high=50_000)
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy, in [0, 1)", low=0, high=1,
                                     high_open=True)
    tta: str = setting("flip", "test-time views: none, flip (image + mirror), multi (flip + 1-px shifts), or "
                               "selective (multi for the least confident share of each batch only)", choices=TTA_MODES)
    tta_share: float = setting(0.1, "selective TTA: the share of each evaluation batch that gets every view, in (0, 1]",
                               low=0, low_open=True, high=1)
    flip_mode: str = setting("random", "random flips every epoch, or alternate: a random first epoch, then "
                                       "each image flipped in every other epoch", choices=FLIP_MODES)
    eval_every: int = setting(1, "evaluate every k-th epoch (always after the last)", low=1, high=10_000)
    eval_batch_size: int = setting(1000, "evaluation batch size", low=1, high=100_000)
    amp_dtype: str = setting("bf16", "autocast precision on CUDA: bf16, fp16 (with a static loss scale) or fp32; the "
                                     "CPU computes in fp32", choices=AMP_DTYPES)
    stop_at_target: bool = setting(True, "train the whole epoch budget even after reaching the target",
                                   true_flag=None, false_flag="--full-budget")
    train_accuracy: bool = setting(True, "count each step's training accuracy (off: no argmax in the step's graph "
                                         "and one op less outside it; the epoch log then shows none)")
    input_kernel: bool = setting(False, "build batches with the fused augment+normalize kernel (kernels/); off "
                                        "until a GPU benchmark shows it faster", false_flag=None)
    cuda_graph: bool = setting(False, "capture the whole training step (its graph, backward and optimizer step) as one "
                                      "CUDA graph per run and replay it every step; CUDA only", false_flag=None)
    compile_mode: str = setting("default", "torch.compile mode of the model and the step's graph: default, or "
                                           "max-autotune-no-cudagraphs (benchmarks kernel choices: faster steps, "
                                           "a longer compile)", choices=COMPILE_MODES)

    def __post_init__(self) -> None:
        check(self)

    def total_steps(self, steps_per_epoch: int) -> int:
        """The budget's training steps: ``epochs`` x ``steps_per_epoch``, rounded up (airbench94's
        9.9 epochs of 48 steps train 476 steps, where 10 epochs would train 480)."""
        return max(1, math.ceil(round(self.epochs * steps_per_epoch, 6)))

    def epochs_run(self, steps_per_epoch: int) -> int:
        """Epochs the loop runs: the budget rounded up; only the last may be partial."""
        return -(-self.total_steps(steps_per_epoch) // steps_per_epoch)

    def steps_in_epoch(self, epoch: int, steps_per_epoch: int) -> int:
        """Steps of the 1-based ``epoch``: all of them, except in a fractional budget's last epoch."""
        return min(steps_per_epoch, self.total_steps(steps_per_epoch) - (epoch - 1) * steps_per_epoch)

    @property
    def whole_epochs(self) -> bool:
        return float(self.epochs).is_integer()
