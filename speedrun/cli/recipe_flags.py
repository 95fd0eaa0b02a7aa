"""The recipe overrides, made from the recipe's dataclasses: one flag per setting.

Every field declared with :func:`speedrun.settings.setting` in the loop, optimizer,
augmentation and model configs becomes a flag (``--field-name`` unless the field names its
own), typed by the field's annotation, with the field's help. Each defaults to "not given", so
an unset flag keeps the named recipe's value. A model flag applies to the recipe's model config
only if it has that field (``--whiten-eps`` means nothing to ResNet-9, and saying so is an
error). :func:`setting_flags` maps a field name to its flag, so the CLI can name the flag in a
:class:`~speedrun.errors.SettingError` raised by the library.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from speedrun import settings
from speedrun.cli import name_settings
from speedrun.cli.values import finite_float, whole_number, whole_numbers
from speedrun.data.augment import AugmentConfig
from speedrun.errors import SpeedrunError
from speedrun.models.fast_net import FastNetConfig
from speedrun.models.resnet9 import ResNet9Config
from speedrun.recipes import Recipe, get_recipe
from speedrun.training.config import TrainConfig
from speedrun.training.optimizers import OptimizerConfig

# (recipe field, its config class, the argument group's title)
SECTIONS: tuple[tuple[str, type, str], ...] = (
    ("train", TrainConfig, "training loop"),
    ("optimizer", OptimizerConfig, "optimizer"),
    ("augment", AugmentConfig, "augmentation"),
)
MODEL_CONFIGS: tuple[type, ...] = (ResNet9Config, FastNetConfig)


@dataclass(frozen=True)
class SettingFlag:
    """One setting on the command line: the field, its flag(s) and where argparse puts the value."""

    field: str
    dest: str
    flags: tuple[str, ...]


def _flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get(settings.FLAG) or "--" + field.name.replace("_", "-")


def _parser_for(annotation: str) -> Callable[[str], Any]:
    """Turn the flag's text into the field's type; a bad value names the flag."""
    if annotation == "int":
        return whole_number
    if annotation == "float":
        return finite_float
    if annotation.startswith("tuple[int"):
        return whole_numbers
    return str


def _add_field(group: argparse._ArgumentGroup, field: dataclasses.Field, seen: dict[str, SettingFlag]) -> None:
    meta = field.metadata
    dest = meta.get(settings.DEST) or field.name
    if dest in seen:                        # a model field both model configs have: one flag serves both
        return
    help_text = meta[settings.HELP]
    if str(field.type) == "bool":
        true_flag = _flag_name(field) if meta.get(settings.TRUE_FLAG) is True else meta.get(settings.TRUE_FLAG)
        false_flag = ("--no-" + field.name.replace("_", "-") if meta.get(settings.FALSE_FLAG) is True
                      else meta.get(settings.FALSE_FLAG))
        flags = []
        if true_flag:
            group.add_argument(true_flag, dest=dest, action="store_true", default=None, help=help_text)
            flags.append(true_flag)
        if false_flag:
            group.add_argument(false_flag, dest=dest, action="store_false", default=None,
                               help=help_text if not true_flag else f"the opposite of {true_flag}")
            flags.append(false_flag)
        seen[dest] = SettingFlag(field.name, dest, tuple(flags))
        return
    flag = _flag_name(field)
    choices = meta.get(settings.CHOICES)
    group.add_argument(flag, dest=dest, default=None, type=_parser_for(str(field.type)), choices=choices,
                       help=f"{help_text} (default: the recipe's)")
    seen[dest] = SettingFlag(field.name, dest, (flag,))


def recipe_setting_flags() -> dict[str, SettingFlag]:
    """Every recipe setting's flag, by argparse destination (made from the dataclasses, no parser needed)."""
    seen: dict[str, SettingFlag] = {}
    scratch = argparse.ArgumentParser(add_help=False).add_argument_group()
    for _, cls, _ in SECTIONS:
        for field in settings.described_fields(cls):
            _add_field(scratch, field, seen)
    for cls in MODEL_CONFIGS:
        for field in settings.described_fields(cls):
            _add_field(scratch, field, seen)
    return seen


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The overrides of the chosen recipe's fields, one group per config; each defaults to None."""
    seen: dict[str, SettingFlag] = {}
    for _, cls, title in SECTIONS:
        group = parser.add_argument_group(f"recipe overrides: {title}")
        for field in settings.described_fields(cls):
            _add_field(group, field, seen)
    model = parser.add_argument_group("recipe overrides: model (each applies where the recipe's model has it)")
    model.add_argument("--width", type=finite_float, dest="width_factor",
                       help="multiply every layer's width (e.g. 0.25 for a quick CPU run)")
    for cls in MODEL_CONFIGS:
        for field in settings.described_fields(cls):
            _add_field(model, field, seen)
    name_settings(parser, {entry.field: entry.flags[0] for entry in seen.values()})


def setting_flags() -> dict[str, str]:
    """Field name -> the flag that sets it, for naming flags in a SettingError's message."""
    out = {}
    for entry in recipe_setting_flags().values():
        out[entry.field] = entry.flags[0]
    return out


def _base_recipe(args: argparse.Namespace) -> Recipe:
    """``--recipe-from RECORD``: the recipe that record ran, rebuilt exactly; else the named ``--recipe``."""
    source = getattr(args, "recipe_from", None)
    if not source:
        return get_recipe(args.recipe)
    from speedrun.results.records import read_record

    record = read_record(source)
    stored = (record.get("config") or {}).get("recipe")
    if not isinstance(stored, dict):
        raise SpeedrunError(f"--recipe-from {source}: the record holds no recipe (config.recipe)")
    try:
        return Recipe.from_dict(stored)
    except (KeyError, TypeError, ValueError) as error:
        raise SpeedrunError(f"--recipe-from {source}: its recipe cannot be rebuilt ({error})") from None


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The named recipe with the command line's overrides applied (SettingError on bad values)."""
    recipe = _base_recipe(args)
    flags = recipe_setting_flags()

    def given(cls: type) -> dict[str, Any]:
        out = {}
        for field in settings.described_fields(cls):
            dest = field.metadata.get(settings.DEST) or field.name
            value = getattr(args, dest, None)
            if value is not None:
                out[field.name] = value
        return out

    changes: dict[str, Any] = {}
    for section, cls, _ in SECTIONS:
        values = given(cls)
        if values:
            changes[section] = dataclasses.replace(getattr(recipe, section), **values)
    model = recipe.model
    model_values: dict[str, Any] = {}
    model_fields = {f.name for f in dataclasses.fields(model)} if dataclasses.is_dataclass(model) else set()
    for cls in MODEL_CONFIGS:
        for name, value in given(cls).items():
            if name not in model_fields:
                flag = flags[name].flags[0]
                raise SpeedrunError(f"{flag} does not apply to recipe {recipe.name}: its model "
                                    f"({type(model).__name__}) has no {name}")
            model_values[name] = value
    if args.width_factor is not None:
        if not args.width_factor > 0:
            raise SpeedrunError(f"--width must be a positive number, got {args.width_factor}")
        widths = model_values.get("widths", model.widths)
        model_values["widths"] = tuple(max(1, round(w * args.width_factor)) for w in widths)
    if model_values:
        changes["model"] = dataclasses.replace(model, **model_values)
    return recipe.replace(**changes) if changes else recipe
