"""The classic assignment: ResNet-9 to 90% with a one-cycle policy whose bounds come from an LR range test.

One cycle over 24 epochs, as Smith describes it but without the final annihilation: the lr
rises linearly from the lower bound to the upper bound at epoch 5, then falls linearly back to
the lower bound at epoch 24, where the run ends. Batch 512, random crop (pad 4) + flip +
8x8 cutout, Nesterov SGD (momentum 0.9, weight decay 5e-4), target 90% test accuracy.

Default bounds: ``max_lr = 0.4`` and ``base_lr = max_lr / 10 = 0.04``. The upper bound is
where the range test puts it for this network: ``speedrun lr-find --width 0.25
--train-subset 10240 --batch-size 128 --start-lr 1e-3 --end-lr 30 --num-steps 80`` (CPU, the
offline CIFAR-10 copy) suggested a one-cycle ``max_lr`` of 0.34 (steepest descent at 0.11, the
smoothed minimum at 10.6, so min/10 = 1.06), and Page's tuned peak for this model is 0.4. The
lower bound is the range test's ``one_cycle_base_lr``, a tenth of the upper one, as Smith
suggests for one-cycle bounds. ``--max-lr auto`` reruns the range test on the run's own data,
width and batch size, and rescales the whole curve to its suggestion (the 10:1 ratio is kept).
"""
from __future__ import annotations

from speedrun.data.augment import AugmentConfig
from speedrun.models.resnet9 import ResNet9Config
from speedrun.parameters import OptimizerConfig
from speedrun.recipes.base import Recipe
from speedrun.schedules.spec import ScheduleSpec
from speedrun.training.config import TrainConfig

ASSIGNMENT_MAX_LR = 0.4
ASSIGNMENT_BASE_LR = ASSIGNMENT_MAX_LR / 10
ASSIGNMENT_EPOCHS = 24
ASSIGNMENT_PEAK_EPOCH = 5


def one_cycle_without_annihilation(base_lr: float, max_lr: float, peak_epoch: float, epochs: float) -> ScheduleSpec:
    """base -> max (linear, at ``peak_epoch``) -> base (linear, at the end), knots as run fractions."""
    if not 0 < base_lr <= max_lr:
        raise ValueError(f"need 0 < base_lr <= max_lr, got base_lr={base_lr}, max_lr={max_lr}")
    if not 0 < peak_epoch < epochs:
        raise ValueError(f"peak_epoch must lie inside the run (0, {epochs}), got {peak_epoch}")
    knots = ((0.0, base_lr), (peak_epoch / epochs, max_lr), (1.0, base_lr))
    return ScheduleSpec("piecewise_linear", knots=knots, knots_as_fraction=True)


def assignment_recipe() -> Recipe:
    """The assignment recipe (module docstring)."""
    return Recipe(
        name="assignment",
        description="The classic assignment: ResNet-9, one-cycle 0.04 -> 0.4 (epoch 5) -> 0.04 (epoch 24), "
                    "no annihilation, bounds from the LR range test (--max-lr auto reruns it); Nesterov SGD, "
                    "batch 512, crop+flip+cutout 8x8, target 90%",
        target=0.90,
        model=ResNet9Config(),
        augment=AugmentConfig(crop_padding=4, flip=True, cutout_size=8),
        optimizer=OptimizerConfig(name="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4),
        schedule=one_cycle_without_annihilation(ASSIGNMENT_BASE_LR, ASSIGNMENT_MAX_LR, ASSIGNMENT_PEAK_EPOCH,
                                                ASSIGNMENT_EPOCHS),
        train=TrainConfig(epochs=ASSIGNMENT_EPOCHS, batch_size=512),
    )
