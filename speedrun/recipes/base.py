"""A recipe: every choice of a training run, as data. Imports no recipe (those live beside it).

A recipe is a frozen tree of dataclasses (model, augmentation, optimizer, schedule, loop),
so a record can store it whole, an ablation is one ``dataclasses.replace``, and the CLI's
flags are overrides of a named recipe rather than a second source of defaults.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from speedrun.data.augment import AugmentConfig
from speedrun.data.cifar10 import SOURCE_OFFICIAL
from speedrun.models.resnet9 import ResNet9Config
from speedrun.schedules.spec import ScheduleSpec
from speedrun.training.optimizers import OptimizerConfig
from speedrun.training.config import TrainConfig


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


CALIBRATION_MARGIN = 0.005     # below the measured mean accuracy: several run-to-run stds of fast94
CALIBRATION_STEP = 0.005       # targets are round numbers: 0.900, 0.905, ...


def calibration_rule(accuracies: Sequence[float]) -> float:
    """The target a copy's measured full-budget accuracies give: their mean less the margin, rounded down.

    A target is set where the recipe's runs reliably get, so that time-to-target measures time
    and not luck: half a point below the measured mean, on the 0.5-point grid.
    """
    if not accuracies:
        raise ValueError("calibration needs at least one measured accuracy")
    mean = math.fsum(accuracies) / len(accuracies)
    return round(math.floor(round((mean - CALIBRATION_MARGIN) / CALIBRATION_STEP, 9)) * CALIBRATION_STEP, 6)


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
