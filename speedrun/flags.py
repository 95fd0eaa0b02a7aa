"""Flags made from settings' declarations: one flag per declared field of a settings dataclass.

A :class:`Section` puts one settings dataclass on a command line: each declared field becomes a
flag (its own spelling, else ``--[prefix-]field-name``) read and checked by its declaration
(:func:`speedrun.settings.parse`), defaulting to "not given" so only what the user typed
overrides. Imports no torch, so the record commands start fast.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from speedrun import settings as decl
from speedrun.errors import SettingError, SpeedrunError

AUTO = "auto"                # a number setting that also takes "auto" (--max-lr auto)


@dataclass(frozen=True)
class Section:
    """One settings dataclass on the command line."""

    key: str                    # the recipe attribute (or options name) it sets
    classes: tuple[type, ...]   # the dataclass(es) whose settings become flags
    title: str
    prefix: str = ""
    switch: str | None = None   # a flag that turns an optional section on with its defaults
    auto: tuple[str, ...] = ()  # fields that also take "auto"

    def fields(self) -> list[tuple[dataclasses.Field, decl.Setting]]:
        seen: dict[str, tuple[dataclasses.Field, decl.Setting]] = {}
        for cls in self.classes:
            for field, setting_ in decl.settings_of(cls):
                seen.setdefault(field.name, (field, setting_))
        return list(seen.values())

    def base_flag(self, field: str, declared: decl.Setting) -> str:
        """The field's own spelling: declared, else ``--[prefix-]field-name``."""
        return declared.flag or "--" + "-".join(p for p in (self.prefix, field.replace("_", "-")) if p)

    def flag(self, field: str, declared: decl.Setting) -> str:
        """The flag that sets ``field`` (for a bool without an on-flag, its off-flag)."""
        flag = self.base_flag(field, declared)
        if declared.kind == "bool" and declared.true_flag is not True:
            if isinstance(declared.true_flag, str):
                return declared.true_flag
            return declared.false_flag if isinstance(declared.false_flag, str) else "--no-" + flag.removeprefix("--")
        return flag

    def dest(self, field: str) -> str:
        return f"{self.key}.{field}"

    def flags(self) -> dict[str, str]:
        """Field name -> its flag."""
        return {f.name: self.flag(f.name, d) for f, d in self.fields()}

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """The fields the command line set."""
        return {f.name: getattr(args, self.dest(f.name)) for f, _ in self.fields()
                if getattr(args, self.dest(f.name), None) is not None}

    def build(self, make: Callable[..., Any], **values: Any) -> Any:
        """``make(**values)``, a SettingError said with this section's flags."""
        try:
            return make(**values)
        except SettingError as error:
            raise SpeedrunError(error.render(lambda name: self.flags().get(name, name))) from None


def _text_reader(name: str, declared: decl.Setting, *, auto: bool = False) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        if auto and text.strip().lower() == AUTO:
            return AUTO
        try:
            return decl.parse(name, declared, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    read.setting = declared          # type: ignore[attr-defined]   # what the flag reads (for tests and help)
    return read


def add_section(parser: argparse.ArgumentParser, section: Section, *, defaults: dict[str, Any] | None = None,
                help_defaults: bool = False) -> None:
    """One flag per setting of ``section``; each defaults to None ("not given") unless in ``defaults``."""
    group = parser.add_argument_group(section.title)
    if section.switch:
        group.add_argument(section.switch, dest=section.dest(""), action="store_true", default=False,
                           help=f"turn on {section.title} (its flags below also do)")
    for field, declared in section.fields():
        flag, dest = section.base_flag(field.name, declared), section.dest(field.name)
        default = (defaults or {}).get(field.name)
        shown = f" (default: {field.default})" if help_defaults and field.default is not None else ""
        help_text = declared.help + shown
        if declared.kind == "bool":
            true_flag = flag if declared.true_flag is True else declared.true_flag
            false_flag = ("--no-" + flag.removeprefix("--") if declared.false_flag is True else declared.false_flag)
            if true_flag:
                group.add_argument(true_flag, dest=dest, action="store_true", default=default, help=help_text)
            if false_flag:
                group.add_argument(false_flag, dest=dest, action="store_false", default=default,
                                   help=f"the opposite of {true_flag}" if true_flag else help_text)
            continue
        metavar = declared.metavar or (field.name.upper() if declared.choices is None else None)
        auto = field.name in section.auto
        group.add_argument(flag, dest=dest, default=default, metavar=metavar,
                           type=_text_reader(field.name, declared, auto=auto),
                           choices=None if declared.choices is None else declared.choices,
                           help=help_text + (" (or auto: run the LR range test first)" if auto else ""))
    names = parser.get_default("setting_flags") or {}
    parser.set_defaults(setting_flags={**section.flags(), **names})


