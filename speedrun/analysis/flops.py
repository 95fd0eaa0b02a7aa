"""How much arithmetic a run does: the FLOPs of its training steps and evaluations.

airbench states its runs' cost in its header (about 0.36 PFLOP for airbench94, 0.29 for
airbench94_muon) so that a time can be set against the GPU's arithmetic limit; this is the same
estimate for any recipe. The network, its optimizer and one batch are made on PyTorch's meta
device (shapes only: no data, no memory, no time) and one training step and one evaluation
forward run under :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the matrix
products and convolutions at 2 FLOPs a multiply-add. What it counts is what runs: the forward,
the backward autograd actually takes (a frozen tensor gets no weight gradient, and nothing
upstream of the trained tensors gets an input gradient), and the optimizer step (Muon's
Newton-Schulz products). Left out, as in airbench's count: elementwise work (batch norm,
activations, the loss, augmentation, SGD's own update), which is bound by memory rather than
arithmetic, and the extra passes of extensions (SWA's batch-norm refresh, snapshot ensembles).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from speedrun.data.cifar10 import CIFAR10_TEST_IMAGES, CIFAR10_TRAIN_IMAGES
from speedrun.recipes.base import Recipe
from speedrun.training.config import TrainConfig
from speedrun.training.evaluation import tta_views
from speedrun.training.optimizers import build_optimizer

META = torch.device("meta")
COUNTED = ("matrix products and convolutions of the forward, the backward autograd runs and the optimizer "
           "step, at 2 FLOPs a multiply-add; not elementwise work or extensions' extra passes")


@dataclass(frozen=True)
class FlopEstimate:
    """A run's arithmetic over its full budget (module docstring for what is counted)."""

    train_step_flops: float      # one training step at the recipe's batch: forward, backward, optimizer
    eval_image_flops: float      # one forward of one test view of one image
    steps: int                   # training steps over the full budget
    eval_images: int             # test images x views x evaluations over the full budget

    @property
    def train_flops(self) -> float:
        return self.train_step_flops * self.steps

    @property
    def eval_flops(self) -> float:
        return self.eval_image_flops * self.eval_images

    @property
    def total_flops(self) -> float:
        return self.train_flops + self.eval_flops

    def to_dict(self) -> dict:
        return {"total_flops": self.total_flops, "train_flops": self.train_flops, "eval_flops": self.eval_flops,
                "train_step_flops": self.train_step_flops, "eval_image_flops": self.eval_image_flops,
                "steps": self.steps, "eval_images": self.eval_images, "counted": COUNTED}

    def describe(self) -> str:
        return (f"{self.total_flops / 1e15:.3f} PFLOP per run over the full budget: training "
                f"{self.train_flops / 1e15:.3f} ({self.steps} steps of {self.train_step_flops / 1e9:.1f} GFLOP), "
                f"evaluation {self.eval_flops / 1e15:.3f} ({self.eval_images} image views)")


def evaluations(epochs: int, eval_every: int) -> int:
    """How many evaluations a full budget makes: every ``eval_every``-th epoch, and always after the last."""
    return epochs // eval_every + (epochs % eval_every != 0)


def estimate_flops(recipe: Recipe, *, train_images: int = CIFAR10_TRAIN_IMAGES,
                   test_images: int = CIFAR10_TEST_IMAGES) -> FlopEstimate:
    """Count one training step and one evaluation forward of ``recipe`` on the meta device, and
    scale them to the full budget on ``train_images`` / ``test_images`` (the whole CIFAR-10 by default)."""
    train = recipe.train
    steps_per_epoch = train_images // train.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {train.batch_size} is larger than the {train_images} training images")
    steps = train.total_steps(steps_per_epoch)
    model = recipe.model.build().to(META, memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.empty(train.batch_size, 3, 32, 32, device=META).contiguous(memory_format=torch.channels_last)
    labels = torch.zeros(train.batch_size, dtype=torch.long, device=META)
    model.train()
    with FlopCounterMode(display=False) as step_counter:
        F.cross_entropy(model(x), labels, label_smoothing=train.label_smoothing).backward()
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as eval_counter:
        model(x[:1])
    return FlopEstimate(train_step_flops=float(step_counter.get_total_flops() + optimizer_step_flops(recipe)),
                        eval_image_flops=float(eval_counter.get_total_flops()), steps=steps,
                        eval_images=round(test_images * views_per_image(train))
                        * evaluations(train.epochs_run(steps_per_epoch), train.eval_every))


def views_per_image(train: TrainConfig) -> float:
    """Forward passes per test image: the TTA views; selective TTA gives its share the other five."""
    x = torch.empty(1, 3, 32, 32, device=META)
    if train.tta == "selective":
        return 1 + train.tta_share * (len(tta_views(x, "multi")) - 1)
    return float(len(tta_views(x, train.tta)))


def optimizer_step_flops(recipe: Recipe) -> int:
    """One optimizer step of ``recipe`` on zero gradients, counted. On the CPU, not the meta device:
    PyTorch's optimizers read a tensor lr on the host, which a meta tensor cannot give; the
    step's cost does not depend on the batch, so this stays cheap."""
    model = recipe.model.build()
    groups = recipe.model.param_groups(model, recipe.optimizer)
    for group in groups:
        for p in group.params:
            p.grad = torch.zeros_like(p)
    opt = build_optimizer(groups, recipe.optimizer, torch.ones(1))
    with FlopCounterMode(display=False) as counter:
        opt.step()
    return int(counter.get_total_flops())
