"""classic: Page's ResNet-9 ("How to train your ResNet"), the 24-epoch DAWNBench-style baseline."""
from __future__ import annotations

from speedrun.recipes.base import Recipe
from speedrun.schedules.spec import ScheduleSpec
from speedrun.training.config import TrainConfig

CLASSIC = Recipe(
    name="classic",
    description="Page's ResNet-9 (How to train your ResNet): one-cycle linear up to 0.4 at epoch 5, "
                "down to 0 at epoch 24; Nesterov SGD, batch 512, crop+flip+cutout 8x8, flip TTA",
    target=0.94,
    schedule=ScheduleSpec("piecewise_linear", knots=((0.0, 0.0), (5 / 24, 0.4), (1.0, 0.0)), knots_as_fraction=True),
    train=TrainConfig(epochs=24, batch_size=512),
)
