"""Config fields that describe themselves, so that a command line can be made from the dataclasses.

A recipe is a tree of frozen dataclasses. Declaring a field with :func:`setting` gives it a help
text and, where the flag differs from the field's name, the flag's name; the CLI
(:mod:`speedrun.cli.recipe_flags`) turns every such field into a flag, so adding a setting to a
recipe is one edit. The library validates and names settings by their field names
(:class:`~speedrun.errors.SettingError`); only the CLI knows flags.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

HELP = "help"
FLAG = "flag"              # the flag that sets the field (default: --field-name)
FALSE_FLAG = "false_flag"  # for a bool: the flag that sets it False (default: --no-field-name; None: none)
TRUE_FLAG = "true_flag"    # for a bool: the flag that sets it True (default: the field's flag; None: none)
CHOICES = "choices"
DEST = "dest"              # the argparse destination (default: the field name)


def setting(default: Any, help: str, *, flag: str | None = None, choices: Sequence[str] | None = None,
            true_flag: str | bool | None = True, false_flag: str | bool | None = True,
            dest: str | None = None) -> Any:
    """A dataclass field with a default, a one-line help text and how the CLI spells it.

    For a bool, ``true_flag`` / ``false_flag`` name the flags that set it True / False
    (``True``: the default spelling ``--name`` / ``--no-name``; ``None``: no such flag).
    """
    metadata = {HELP: help, FLAG: flag, CHOICES: tuple(choices) if choices is not None else None,
                TRUE_FLAG: true_flag, FALSE_FLAG: false_flag, DEST: dest}
    if isinstance(default, (list, dict, set)):
        raise TypeError("a setting's default must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=metadata)


def described_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that were declared with :func:`setting`."""
    return [f for f in dataclasses.fields(cls) if HELP in f.metadata]
