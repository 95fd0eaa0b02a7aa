"""Errors that are the user's to fix.

Anything raised as a :class:`SpeedrunError` is printed by the CLI as one line naming the fix,
with exit code 2 and no traceback. Programming errors stay ordinary exceptions.
"""
from __future__ import annotations

from collections.abc import Callable


class SpeedrunError(Exception):
    """Bad input from the user: a missing dataset, a bad flag value, a malformed record."""

    exit_code = 2


class DatasetError(SpeedrunError):
    """The dataset is missing, truncated, corrupt or of the wrong shape."""


class RecordError(SpeedrunError):
    """A result record is missing fields, from a newer schema, or otherwise unreadable."""


class SettingError(SpeedrunError, ValueError):
    """A config setting has a bad value. It names the setting by its field name; the CLI, which
    knows which flag sets which field, says the flag instead.

    ``problem`` may mention other settings as ``{name}`` placeholders, so that they too are
    named as the reader knows them (field names in the library, flags on the command line).
    """

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(self.render(lambda name: name))

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with every setting written as ``name_of(field name)``."""
        try:
            problem = self.problem.format_map(_Names(name_of))
        except (ValueError, IndexError, AttributeError):   # braces in a quoted value, not placeholders
            problem = self.problem
        return f"{name_of(self.setting)} {problem}"


class _Names(dict):
    def __init__(self, name_of: Callable[[str], str]) -> None:
        super().__init__()
        self.name_of = name_of

    def __missing__(self, key: str) -> str:
        return self.name_of(key)
