"""Parameter checks whose error names the parameter, the rule and the value given.

The one implementation of number checks: configs, schedule policies and extensions validate
their settings with these, so every bad value reaches the user as one line saying what to fix.
The error is a :class:`~speedrun.errors.SettingError` (a ``ValueError``) naming the setting;
the CLI writes the flag that sets it instead.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TypeGuard

from speedrun.errors import SettingError


def is_int(value: object) -> TypeGuard[int]:
    """An integer, but not a bool (``True`` is not a step count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[float]:
    """A finite real number, but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def int_at_least(name: str, value: object, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise SettingError(name, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def real_in(name: str, value: object, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within optional (open or closed) bounds."""
    ok = is_real(value)
    if is_real(value) and low is not None:
        ok = value > low if low_open else value >= low
    if ok and is_real(value) and high is not None:
        ok = value < high if high_open else value <= high
    if not ok or not is_real(value):
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high}")
        where = f" {' and '.join(bounds)}" if bounds else ""
        raise SettingError(name, f"must be a finite number{where}, got {value!r}")
    return float(value)


def one_of(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise SettingError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def positive_ints(name: str, value: object, count: int) -> tuple[int, ...]:
    """``count`` positive integers (e.g. a model's channel widths)."""
    if not isinstance(value, (tuple, list)) or len(value) != count or not all(is_int(v) and v > 0 for v in value):
        raise SettingError(name, f"must be {count} positive whole numbers, got {value!r}")
    return tuple(int(v) for v in value)
