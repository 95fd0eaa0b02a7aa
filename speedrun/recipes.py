"""Named recipes: every choice of a training run, as data.

A recipe is a frozen tree of dataclasses (model, augmentation, optimizer, schedule, loop),
so a record can store it whole, an ablation is one ``dataclasses.replace``, and the CLI's
flags are overrides of a named recipe rather than a second source of defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from speedrun.augment import AugmentConfig
from speedrun.model import ResNet9Config
from speedrun.optim import OptimizerConfig
from speedrun.train import TrainConfig


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule policy by name with its parameters, built once the step count is known.

    With ``knots_as_fraction`` (piecewise_linear only) knot positions are fractions of the
    whole run, so the recipe's shape survives an ``--epochs`` override.
    """

    name: str = "piecewise_linear"
    params: Mapping[str, Any] = field(default_factory=dict)
    interval: str = "step"
    knots_as_fraction: bool = False

    def build(self, total_steps: int, steps_per_epoch: int):
        """The per-step :class:`speedrun.schedules.Schedule` for a run of ``total_steps``."""
        from speedrun.schedules import build_schedule

        params = dict(self.params)
        if self.knots_as_fraction:
            params["knots"] = [(position * total_steps, lr) for position, lr in params["knots"]]
        return build_schedule(self.name, total_steps, steps_per_epoch=steps_per_epoch,
                              interval=self.interval, **params)


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a training run, apart from its seed and its data."""

    name: str
    description: str
    target: float
    model: ResNet9Config = ResNet9Config()
    augment: AugmentConfig = AugmentConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleSpec = ScheduleSpec()
    train: TrainConfig = TrainConfig()
    extensions: tuple = ()               # Extension configs: SWA, snapshots, plateau, lookahead...

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """asdict, plus each model/extension config's class name (asdict alone drops it)."""
        d = dataclasses.asdict(self)
        d["model"] = {"type": type(self.model).__name__, **d["model"]}
        d["extensions"] = [{"type": type(e).__name__, **dataclasses.asdict(e)} for e in self.extensions]
        return d


CLASSIC = Recipe(
    name="classic",
    description="Page's ResNet-9 (How to train your ResNet): one-cycle linear up to 0.4 at epoch 5, "
                "down to 0 at epoch 24; Nesterov SGD, batch 512, crop+flip+cutout 8x8, flip TTA",
    target=0.94,
    schedule=ScheduleSpec("piecewise_linear", {"knots": ((0.0, 0.0), (5 / 24, 0.4), (1.0, 0.0))},
                          knots_as_fraction=True),
    train=TrainConfig(epochs=24, batch_size=512),
)

# fast.py and assignment.py import Recipe lazily (inside their recipe functions), so importing
# them here makes no cycle.
from speedrun.assignment import assignment_recipe  # noqa: E402
from speedrun.fast import fast94_recipe, fast_recipe_ablations  # noqa: E402

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {r.name: r for r in (CLASSIC, fast94_recipe(), assignment_recipe())})


def get_recipe(name: str) -> Recipe:
    """The named recipe, or a one-technique ablation of fast94 (``fast94-no_lookahead``, ...).

    ValueError lists the known names.
    """
    if name in RECIPES:
        return RECIPES[name]
    ablations = {r.name: r for r in fast_recipe_ablations().values()}
    if name in ablations:
        return ablations[name]
    raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}, "
                     f"or an ablation: {', '.join(ablations)}")
