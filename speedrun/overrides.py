"""Flag words to settings: the layer under both the command line and sweeps.

Every flag is generated from a setting's declaration (:mod:`speedrun.settings`): a
:class:`Section` is one settings dataclass on the command line, each field a flag (its own
spelling, else ``--[prefix-]field-name``) that defaults to "not given". :func:`train_settings`
turns parsed flags into the recipe and harness options a run trains with, whoever parsed them:
``speedrun train``, or a sweep's driver and workers via :func:`settings_from_flags`.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from speedrun.bench.harness import HarnessOptions
from speedrun.data.augment import AugmentConfig
from speedrun.data.cifar10 import CIFAR10_TRAIN_IMAGES, Cifar10
from speedrun.errors import SpeedrunError
from speedrun.extensions.plateau import PlateauConfig
from speedrun.extensions.snapshots import SnapshotEnsembleConfig, cycle_ends_from_lr
from speedrun.extensions.swa import SWAConfig
from speedrun.flags import AUTO, Section, add_section
from speedrun.parameters import OPTIMIZER_DEFAULTS, OptimizerConfig
from speedrun.recipes import RECIPES, Recipe, get_recipe
from speedrun.recipes.base import MODEL_CONFIG_TYPES
from speedrun.schedules import ScheduleSpec, policy_parameters
from speedrun.settings import setting
from speedrun.training.config import TrainConfig
from speedrun.training.range_test import LRFinderConfig

_STAND_IN_PEAK = 1e3         # checks that --max-lr auto has a peak to set; never trained with
# Record settings --recipe-from takes from the record's harness options (flags still win).
RECORD_OPTIONS = ("runs", "seed", "target", "compile", "data_dir", "download", "train_subset", "test_subset")


@dataclass(frozen=True)
class RecipeSource:
    """Which recipe a command starts from, and how its model is scaled."""

    recipe: str = setting("classic", f"named recipe: {', '.join(RECIPES)}, or a fast94 ablation")
    recipe_from: str | None = setting(None, "rebuild the run a record made (recipe, subsets, target, data), "
                                            "instead of --recipe; flags still override", metavar="RECORD")
    width: float | None = setting(None, "multiply every layer's width (e.g. 0.25 for a quick CPU run)", low=0,
                                  low_open=True, high=64)


HARNESS = Section("options", (HarnessOptions,), "runs and data")
SOURCE = Section("source", (RecipeSource,), "recipe")
RECIPE_SECTIONS = (
    Section("train", (TrainConfig,), "training loop"),
    Section("optimizer", (OptimizerConfig,), "optimizer"),
    Section("augment", (AugmentConfig,), "augmentation"),
    Section("model", MODEL_CONFIG_TYPES, "model (each applies where the recipe's model has it)"),
)
SCHEDULE = Section("schedule", (ScheduleSpec,), "learning-rate schedule", auto=("max_lr",))
EXTENSIONS = (
    Section("swa", (SWAConfig,), "stochastic weight averaging", prefix="swa"),
    Section("snapshot", (SnapshotEnsembleConfig,), "snapshot ensemble (for warm restarts)", prefix="snapshot",
            switch="--snapshot-ensemble"),
    Section("plateau", (PlateauConfig,), "reduce on plateau", prefix="plateau", switch="--plateau"),
)
TRAIN_SECTIONS = (SOURCE, HARNESS, *RECIPE_SECTIONS, SCHEDULE, *EXTENSIONS)


def add_train_flags(parser: argparse.ArgumentParser, *, default_recipe: str | None = "classic",
                    sections: Iterable[Section] = TRAIN_SECTIONS) -> None:
    """The flags of ``speedrun train`` (and of the commands that train a recipe like it)."""
    sections = tuple(sections)
    if HARNESS in sections:
        parser.add_argument("--no-record", dest="no_record", action="store_true", help="write no record")
    for section in sections:
        add_section(parser, section, defaults={"recipe": default_recipe} if section is SOURCE else None)


# -- from parsed flags to a run's settings --------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """What a train command line means: the recipe it trains and the harness options."""

    recipe: Recipe
    options: HarnessOptions
    flags: tuple[str, ...] = ()

    def table(self) -> dict[str, Any]:
        """Every setting as flat ``recipe.model.widths -> value`` pairs, less what differs run by run
        (seed, runs, device, where the record goes): what two command lines are compared by."""
        per_run = ("seed", "runs", "out", "record", "force", "device")
        options = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in per_run}
        recipe = {k: v for k, v in self.recipe.to_dict().items() if k != "description"}   # words derived from the rest
        return _flat({"recipe": recipe, "options": options})


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def base_recipe(args: argparse.Namespace) -> tuple[Recipe, dict[str, Any]]:
    """``--recipe-from RECORD``'s recipe and harness options, rebuilt exactly; else ``--recipe``'s."""
    source = getattr(args, SOURCE.dest("recipe_from"), None)
    if not source:
        return SOURCE.build(get_recipe, name=getattr(args, SOURCE.dest("recipe"), None) or "classic"), {}
    from speedrun.results.records import read_record

    try:
        config = read_record(source).get("config") or {}
    except SpeedrunError as error:
        raise SpeedrunError(f"--recipe-from {error}") from None
    stored, harness = config.get("recipe"), config.get("harness") or {}
    if not isinstance(stored, dict) or not isinstance(harness, dict):
        raise SpeedrunError(f"--recipe-from {source}: the record holds no recipe (config.recipe)")
    try:
        recipe = Recipe.from_dict(stored)
    except (KeyError, TypeError, ValueError) as error:
        raise SpeedrunError(f"--recipe-from {source}: its recipe cannot be rebuilt ({error})") from None
    return recipe, {k: harness[k] for k in RECORD_OPTIONS if harness.get(k) is not None}


def _with_model_flags(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    model_section = RECIPE_SECTIONS[-1]
    given = model_section.given(args)
    model = recipe.model
    has = {f.name for f in dataclasses.fields(model)}
    for name in given:
        if name not in has:
            raise SpeedrunError(f"{model_section.flags()[name]} does not apply to recipe {recipe.name}: its model "
                                f"({type(model).__name__}) has no {name}")
    width = getattr(args, SOURCE.dest("width"), None)
    if width is not None:
        widths = given.get("widths", model.widths)
        given["widths"] = tuple(min(4096, max(1, round(w * width))) for w in widths)
    return recipe if not given else recipe.replace(model=model_section.build(_replacing(model), **given))


def _replacing(obj: Any) -> Callable[..., Any]:
    return lambda **changes: dataclasses.replace(obj, **changes)


def _schedule(recipe: Recipe, args: argparse.Namespace, max_lr: Any, *, auto: bool = False) -> ScheduleSpec:
    """The run's schedule: ``--schedule`` and its flags, or the recipe's (changed by the warm-up flags,
    ``--max-lr`` and its policy's own flags; another policy's flag is an error naming it). With ``auto`` (the
    peak came from the range test) a cyclic_lr without ``--base-lr`` gets the test's lower bound."""
    given = SCHEDULE.given(args)
    given.pop("max_lr", None)
    flags = SCHEDULE.flags()
    if "name" in given:
        if max_lr is not None:
            given["max_lr"] = max_lr
            if auto and given["name"] == "cyclic_lr" and "base_lr" not in given:
                given["base_lr"] = max_lr / LRFinderConfig().cyclic_divisor
        return SCHEDULE.build(ScheduleSpec, **given)
    takes = {"warmup", "warmup_mode", "warmup_start_factor", *policy_parameters(recipe.schedule.name)}
    if recipe.schedule.knots_as_fraction:
        takes.discard("knots")       # the recipe's knots are fractions of the run; new ones need --schedule
    foreign = [flags[name] for name in given if name not in takes]
    if foreign:
        raise SpeedrunError(f"{', '.join(foreign)}: not a parameter of the recipe's schedule "
                            f"({recipe.schedule.name}); give the policy with --schedule NAME")
    spec = SCHEDULE.build(_replacing(recipe.schedule), **given)
    return spec if max_lr is None else SCHEDULE.build(spec.with_peak, peak=max_lr)


def schedule_of(recipe: Recipe, args: argparse.Namespace) -> ScheduleSpec:
    """The schedule the flags give ``recipe``, without a run (``speedrun schedule``)."""
    max_lr = getattr(args, SCHEDULE.dest("max_lr"), None)
    if max_lr == AUTO:
        raise SpeedrunError("--max-lr auto needs a run's data and device: use it with speedrun train")
    return _schedule(recipe, args, max_lr)


def _extensions(args: argparse.Namespace) -> tuple:
    made = []
    for section in EXTENSIONS:
        given = section.given(args)
        if given or getattr(args, section.dest(""), False):
            made.append(section.build(section.classes[0], **given))
    if sum(isinstance(e, (SWAConfig, SnapshotEnsembleConfig)) for e in made) > 1:
        raise SpeedrunError("--swa-epochs and --snapshot-ensemble both replace the run's final accuracy; choose one")
    return tuple(made)


def train_settings(args: argparse.Namespace, *, data: Cifar10 | None = None, resolve_auto: bool = True,
                   log: Callable[[str], None] = print) -> TrainSettings:
    """The recipe and harness options that parsed train flags ask for, checked before any work.

    The schedule is built once here for the run's step count, so a bad flag fails before data is
    moved or compiled. ``--max-lr auto`` runs the LR range test first (``resolve_auto=False``
    only checks the flags: a stand-in peak, never trained with).
    """
    recipe, recorded = base_recipe(args)
    options_given = HARNESS.given(args)
    if getattr(args, "no_record", False):
        options_given["out"] = None
    options = HARNESS.build(HarnessOptions, **{**recorded, **options_given})
    base_recipe_of_run = recipe
    changes = {s.key: s.build(_replacing(getattr(recipe, s.key)), **s.given(args))
               for s in RECIPE_SECTIONS[:-1] if s.given(args)}
    recipe = _with_model_flags(recipe.replace(**changes), args)
    extensions = _extensions(args)
    max_lr = getattr(args, SCHEDULE.dest("max_lr"), None)
    auto = max_lr == AUTO
    base = recipe
    recipe = recipe.replace(schedule=_schedule(recipe, args, _STAND_IN_PEAK if auto else max_lr, auto=auto),
                            extensions=tuple(recipe.extensions) + extensions)
    recipe = _optimizer_defaults(base_recipe_of_run, recipe, args, log)
    check_budget(recipe, options)        # every flag checked before any work (and before a range test)
    if auto and resolve_auto:
        from speedrun.bench.lr_find import resolve_auto_max_lr

        peak = resolve_auto_max_lr(recipe, options, data, log=log)
        recipe = recipe.replace(schedule=_schedule(base, args, peak, auto=True))
        check_budget(recipe, options)    # the schedule with its measured peak
    if recipe.to_dict() != base_recipe_of_run.to_dict():
        recipe = recipe.replace(description=run_description(recipe, base_recipe_of_run.name))
    return TrainSettings(recipe, options)


def run_description(recipe: Recipe, made_from: str) -> str:
    """The run as flags made it, in words (a record's and a DAWNBench entry's description): the
    recipe's own text describes the recipe as shipped, not a run of 3 epochs at another batch."""
    opt, sched, train = recipe.optimizer, recipe.schedule, recipe.train
    rates = [lr for _, lr in sched.knots or ()] or [r for r in (sched.max_lr, sched.base_lr) if r is not None]
    peak = f" peaking at {max(rates):.4g}" if rates else ""
    warmup = f" after a {sched.warmup} warm-up" if sched.warmup else ""
    extras = [type(e).__name__.removesuffix("Config") for e in recipe.extensions]
    return (f"{made_from} as run: {train.epochs:g} epochs at batch {train.batch_size}, {opt.name} "
            f"(weight decay {opt.weight_decay:g}), {sched.name}{peak}{warmup}"
            + (f", with {', '.join(extras)}" if extras else ""))


def _optimizer_defaults(made_for: Recipe, recipe: Recipe, args: argparse.Namespace,
                        log: Callable[[str], None]) -> Recipe:
    """``--optimizer`` away from the SGD (or Muon) a recipe's rates were made for: that optimizer's
    documented peak rate and decay (:data:`OPTIMIZER_DEFAULTS`) where the command line sets
    neither, said in one line; what was used is in the record's recipe."""
    name, was = recipe.optimizer.name, made_for.optimizer.name
    if name == was or name not in OPTIMIZER_DEFAULTS or was not in ("sgd", "muon"):
        return recipe
    peak, decay = OPTIMIZER_DEFAULTS[name]
    rates_given = {"max_lr", "base_lr", "knots", "name"} & set(SCHEDULE.given(args))
    said = []
    if not rates_given:
        recipe = recipe.replace(schedule=_peak_at(recipe.schedule, peak))
        said.append(f"peak lr {peak:g} (--max-lr or --base-lr sets it)")
    if "weight_decay" not in RECIPE_SECTIONS[1].given(args):
        recipe = recipe.replace(optimizer=dataclasses.replace(recipe.optimizer, weight_decay=decay))
        said.append(f"weight decay {decay:g} (--weight-decay sets it)")
    if said:
        log(f"--optimizer {name}: the recipe's rates were made for {was}, so {name}'s defaults: {'; '.join(said)}")
    return recipe


def _peak_at(spec: ScheduleSpec, peak: float) -> ScheduleSpec:
    """``spec`` with its highest rate at ``peak``: its max_lr or knots (:meth:`ScheduleSpec.with_peak`), else
    its base_lr, and eta_min scaled along."""
    if "max_lr" in policy_parameters(spec.name) or spec.name == "piecewise_linear":
        return spec.with_peak(peak)
    scale = peak / spec.base_lr if spec.base_lr else 1.0
    return dataclasses.replace(spec, base_lr=peak, eta_min=None if spec.eta_min is None else spec.eta_min * scale)


def check_budget(recipe: Recipe, options: HarnessOptions) -> None:
    """Build the schedule and check the extensions against the run's length, before any work."""
    steps_per_epoch = max(1, (options.train_subset or CIFAR10_TRAIN_IMAGES) // recipe.train.batch_size)
    epochs = recipe.train.epochs
    if recipe.train.input_kernel and recipe.augment.jitter:
        raise SpeedrunError("--input-kernel builds batches without colour jitter; turn off --input-kernel or set "
                            "--brightness 0 --contrast 0")
    for ext in recipe.extensions:
        if isinstance(ext, SWAConfig) and (ext.epochs > epochs or not float(epochs).is_integer()):
            raise SpeedrunError(f"--swa-epochs {ext.epochs} needs a whole --epochs of at least that many "
                                f"(the run has {epochs:g})")
        if isinstance(ext, SnapshotEnsembleConfig) and ext.cycle_end_epochs and ext.cycle_end_epochs[-1] > epochs:
            raise SpeedrunError(f"--snapshot-epochs go past the run's {epochs:g} epochs")
    schedule = SCHEDULE.build(recipe.schedule.build, total_steps=recipe.train.total_steps(steps_per_epoch),
                              steps_per_epoch=steps_per_epoch)
    for ext in recipe.extensions:
        if isinstance(ext, SnapshotEnsembleConfig) and ext.cycle_end_epochs is None:
            epochs_run = recipe.train.epochs_run(steps_per_epoch)
            if len(cycle_ends_from_lr(schedule.lr, steps_per_epoch, epochs_run)) < 2:
                raise SpeedrunError("--snapshot-ensemble: the schedule has no warm restarts to take snapshots at; "
                                    "use --schedule cosine_annealing_warm_restarts or give --snapshot-epochs")


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise SpeedrunError(message)


def train_parser(prog: str = "speedrun train") -> argparse.ArgumentParser:
    """A parser of train flags that raises SpeedrunError instead of exiting (for sweeps)."""
    parser = _RaisingParser(prog=prog, add_help=False, allow_abbrev=False)
    add_train_flags(parser)
    return parser


def settings_from_flags(flags: Sequence[str], *, data: Cifar10 | None = None, resolve_auto: bool = True,
                        log: Callable[[str], None] = print) -> TrainSettings:
    """Train flag words to settings, as ``speedrun train`` would read them; SpeedrunError names the
    flag. How a sweep checks each run's flags before anything runs, and how its workers build runs."""
    args = train_parser().parse_args(list(flags))
    settings = train_settings(args, data=data, resolve_auto=resolve_auto, log=log)
    return dataclasses.replace(settings, flags=tuple(flags))
