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
from speedrun.data import SOURCE_OFFICIAL
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
class CalibratedTarget:
    """A recipe's default target on one dataset copy, derived from accuracy measured on that copy.

    Accuracy on a lossy copy of CIFAR-10 (the JPEG-q75 one) runs below the real dataset's, so the
    recipe's CIFAR-10 target may be out of reach there, and a run that never reaches its target
    measures nothing. ``evidence`` says which record the number comes from and by what rule.
    """

    dataset: str          # the dataset copy's name, as ``Cifar10.source`` gives it
    target: float
    evidence: str

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ValueError(f"a calibrated target must be an accuracy in (0, 1], got {self.target}")


@dataclass(frozen=True)
class TargetChoice:
    """The target a run aims for and where it came from (recorded beside it)."""

    target: float
    source: str


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a training run, apart from its seed and its data.

    ``target`` is the recipe's goal on the real CIFAR-10; ``calibrated_targets`` give its
    default on other copies of the data (see :meth:`target_for`).
    """

    name: str
    description: str
    target: float
    model: ResNet9Config = ResNet9Config()
    augment: AugmentConfig = AugmentConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleSpec = ScheduleSpec()
    train: TrainConfig = TrainConfig()
    extensions: tuple = ()               # Extension configs: SWA, snapshots, plateau, lookahead...
    calibrated_targets: tuple[CalibratedTarget, ...] = ()

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)

    def target_for(self, dataset: str, given: float | None = None) -> TargetChoice:
        """The target for a run on ``dataset`` (a ``Cifar10.source``), and where it came from.

        ``given`` (``--target``) wins. Otherwise: the recipe's own target on the real CIFAR-10;
        the calibrated target on a copy that has one; on any other data the recipe's CIFAR-10
        target, said to be uncalibrated there (runs may never reach it).
        """
        if given is not None:
            return TargetChoice(given, "given (--target)")
        if dataset == SOURCE_OFFICIAL:
            return TargetChoice(self.target, f"{self.name}'s target on {SOURCE_OFFICIAL}")
        for calibrated in self.calibrated_targets:
            if calibrated.dataset == dataset:
                return TargetChoice(calibrated.target, f"calibrated on {dataset}: {calibrated.evidence}")
        return TargetChoice(self.target, f"not calibrated on {dataset}: {self.name}'s target on {SOURCE_OFFICIAL}, "
                                         f"which runs on this data may never reach; pass --target")

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
