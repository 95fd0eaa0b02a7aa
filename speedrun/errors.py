"""Errors that are the user's to fix.

Anything raised as a :class:`SpeedrunError` is printed by the CLI as one line naming the fix,
with exit code 2 and no traceback. Programming errors stay ordinary exceptions.
"""
from __future__ import annotations


class SpeedrunError(Exception):
    """Bad input from the user: a missing dataset, a bad flag value, a malformed record."""

    exit_code = 2


class DatasetError(SpeedrunError):
    """The dataset is missing, truncated, corrupt or of the wrong shape."""


class RecordError(SpeedrunError):
    """A result record is missing fields, from a newer schema, or otherwise unreadable."""
