"""A recipe: every choice of a training run, as data. Imports no recipe (those live beside it).

A recipe is a frozen tree of dataclasses (model, augmentation, optimizer, schedule, loop),
so a record can store it whole, an ablation is one ``dataclasses.replace``, and the CLI's
flags are overrides of a named recipe rather than a second source of defaults.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from speedrun.data.augment import AugmentConfig
from speedrun.data.cifar10 import SOURCE_OFFICIAL
from speedrun.extensions.decoupled_weight_decay import DecoupledWeightDecay
from speedrun.extensions.lookahead import LookaheadConfig
from speedrun.extensions.plateau import PlateauConfig
from speedrun.extensions.snapshots import SnapshotEnsembleConfig
from speedrun.extensions.swa import SWAConfig
from speedrun.extensions.whitening_bias import WhiteningBiasSchedule
from speedrun.models.fast_net import FastNetConfig
from speedrun.models.protocol import ModelConfig
from speedrun.models.resnet9 import ResNet9Config
from speedrun.parameters import OptimizerConfig
from speedrun.schedules.spec import ScheduleSpec
from speedrun.training.config import TrainConfig
from speedrun.training.trainer import Extension


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
    model: ModelConfig = ResNet9Config()
    augment: AugmentConfig = AugmentConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleSpec = ScheduleSpec()
    train: TrainConfig = TrainConfig()
    extensions: tuple[Extension, ...] = ()     # SWA, snapshots, plateau, lookahead, decoupled decay...
    calibrated_targets: tuple[CalibratedTarget, ...] = ()

    def replace(self, **changes: Any) -> Recipe:
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
        d["model"] = {"type": type(self.model).__name__, **dataclasses.asdict(self.model)}
        d["schedule"] = self.schedule.to_dict()
        d["extensions"] = [{"type": type(e).__name__, **dataclasses.asdict(e)}  # type: ignore[call-overload]
                           for e in self.extensions]     # (an Extension is a dataclass; the protocol does not say so)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """The recipe that :meth:`to_dict` (a record's ``config.recipe``) describes, so a record can be re-run.

        JSON turns tuples into lists; fields declared as tuples get tuples back. A model or
        extension type this speedrun does not know is a ValueError naming it.
        """
        model = dict(data["model"])
        model_type = _config_type(MODEL_CONFIG_TYPES, model.pop("type", None), "model")
        extensions = []
        for entry in data.get("extensions", []):
            entry = dict(entry)
            extensions.append(_from_fields(_config_type(EXTENSION_TYPES, entry.pop("type", None), "extension"), entry))
        return cls(
            name=data["name"], description=data["description"], target=data["target"],
            model=_from_fields(model_type, model),
            augment=_from_fields(AugmentConfig, data["augment"]),
            optimizer=_from_fields(OptimizerConfig, data["optimizer"]),
            schedule=ScheduleSpec.from_dict(data["schedule"]),
            train=_from_fields(TrainConfig, data["train"]),
            extensions=tuple(extensions),
            calibrated_targets=tuple(_from_fields(CalibratedTarget, t) for t in data.get("calibrated_targets", [])),
        )


# The config types a record may name, by class name (Recipe.from_dict).
MODEL_CONFIG_TYPES: tuple[type, ...] = (ResNet9Config, FastNetConfig)
EXTENSION_TYPES: tuple[type, ...] = (SWAConfig, SnapshotEnsembleConfig, PlateauConfig, LookaheadConfig,
                                     DecoupledWeightDecay, WhiteningBiasSchedule)


def _config_type(known: tuple[type, ...], name: object, what: str) -> type:
    for cls in known:
        if cls.__name__ == name:
            return cls
    raise ValueError(f"unknown {what} config type {name!r}; this speedrun knows {', '.join(c.__name__ for c in known)}")


def _from_fields(cls: type, values: Mapping[str, Any]) -> Any:
    """``cls(**values)`` for the fields ``cls`` has, with JSON lists turned back into tuples where declared."""
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = values[field.name]
        if isinstance(value, list) and str(field.type).startswith("tuple"):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)
