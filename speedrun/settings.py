"""Settings that declare themselves once: type, bounds, choices and help, on a dataclass field.

Every setting of speedrun is a field declared with :func:`setting` on a frozen dataclass (a
recipe's configs, a schedule, an extension, the harness's options). From that one declaration:

* :func:`check` validates an instance (``__post_init__`` calls it), raising a
  :class:`~speedrun.errors.SettingError` that names the field;
* :func:`parse` reads a setting from text, as a command line or a sweep spec gives it;
* :mod:`speedrun.overrides` makes the flags of every command.

Every number has finite bounds (a default cap where none is declared), so no value anyone can
type overflows or makes a loop run for ever before any work.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from speedrun.checks import is_int, is_real
from speedrun.errors import SettingError

INT_CAP = 10**9            # the largest count any setting takes unless it declares its own high
FLOAT_CAP = 1e6            # the largest magnitude of any real setting unless it declares its own bounds
KINDS = ("int", "float", "str", "bool", "ints", "floats", "duration", "durations", "knots")
_KEY = "speedrun_setting"


@dataclass(frozen=True)
class Setting:
    """How one field is read, checked and spelled on a command line."""

    help: str
    kind: str
    optional: bool = False
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    flag: str | None = None               # default: --field-name (with the section's prefix)
    true_flag: str | bool | None = True   # bool: the flag setting it True (True: the default spelling)
    false_flag: str | bool | None = True  # bool: the flag setting it False (True: --no-<flag>)
    metavar: str | None = None

    def bounds(self) -> tuple[float, float]:
        """The closed-form limits a number is checked against, caps included."""
        cap = INT_CAP if self.kind in ("int", "ints") else FLOAT_CAP
        low = -cap if self.low is None else self.low
        high = cap if self.high is None else self.high
        return low, high

    def rule(self) -> str:
        low, high = self.bounds()
        return f"{'>' if self.low_open else '>='} {low:g} and {'<' if self.high_open else '<='} {high:g}"


def setting(default: Any, help: str, *, kind: str | None = None, choices: Sequence[str] | None = None,
            low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
            flag: str | None = None, true_flag: str | bool | None = True, false_flag: str | bool | None = True,
            metavar: str | None = None) -> Any:
    """A dataclass field with a default and its declaration. ``kind`` defaults to the field's
    annotation (int, float, str, bool, tuples of ints or floats); durations and knots name theirs."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("a setting's default must be immutable (use a tuple)")
    declared = {"help": help, "kind": kind, "choices": tuple(choices) if choices is not None else None,
                "low": low, "high": high, "low_open": low_open, "high_open": high_open, "flag": flag,
                "true_flag": true_flag, "false_flag": false_flag, "metavar": metavar}
    return dataclasses.field(default=default, metadata={_KEY: declared})


def _kind_of(annotation: str) -> tuple[str, bool]:
    text = annotation.replace(" ", "")
    optional = text.endswith("|None")
    text = text.removesuffix("|None")
    if text.startswith("tuple[int"):
        return "ints", optional
    if text.startswith("tuple[float"):
        return "floats", optional
    return text, optional


def declared(field: dataclasses.Field) -> Setting | None:
    """The declaration of ``field``, or None for a field that is not a setting."""
    meta = field.metadata.get(_KEY)
    if meta is None:
        return None
    kind, optional = _kind_of(str(field.type))
    meta = dict(meta)
    kind = meta.pop("kind") or kind
    if kind not in KINDS:
        raise TypeError(f"setting {field.name}: kind {kind!r} is not one of {', '.join(KINDS)}")
    return Setting(kind=kind, optional=optional, **meta)


def settings_of(cls: type) -> list[tuple[dataclasses.Field, Setting]]:
    """The declared settings of dataclass ``cls``, in field order."""
    out = []
    for field in dataclasses.fields(cls):
        decl = declared(field)
        if decl is not None:
            out.append((field, decl))
    return out


# -- checking values -------------------------------------------------------------------


def _in_bounds(decl: Setting, value: float) -> bool:
    low, high = decl.bounds()
    above = value > low if decl.low_open else value >= low
    below = value < high if decl.high_open else value <= high
    return above and below


def _check_number(name: str, decl: Setting, value: object, whole: bool) -> None:
    ok = is_int(value) if whole else is_real(value)
    if ok and _in_bounds(decl, float(value)):   # type: ignore[arg-type]
        return
    what = "a whole number" if whole else "a finite number"
    raise SettingError(name, f"must be {what} {decl.rule()}, got {value!r}")


def check_value(name: str, decl: Setting, value: object) -> None:
    """Raise SettingError(name) unless ``value`` is of the declared kind and within bounds."""
    if value is None and decl.optional:
        return
    kind = decl.kind
    if kind in ("int", "float"):
        _check_number(name, decl, value, kind == "int")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise SettingError(name, f"must be true or false, got {value!r}")
    elif kind == "str":
        if isinstance(value, str) and not value.strip():
            raise SettingError(name, "is empty; give a value (or leave the setting out)")
        if isinstance(value, str) and "\x00" in value:
            raise SettingError(name, "holds a NUL character, which no name or path can")
        if not isinstance(value, str) or (decl.choices is not None and value not in decl.choices):
            allowed = f"one of {', '.join(decl.choices)}" if decl.choices is not None else "text"
            raise SettingError(name, f"must be {allowed}; got {value!r}")
    elif kind in ("ints", "floats"):
        if not isinstance(value, (tuple, list)) or not value:
            raise SettingError(name, f"must be a non-empty list of numbers, got {value!r}")
        for item in value:
            _check_number(name, decl, item, kind == "ints")
    elif kind == "duration":
        to_duration(name, decl, value)
    elif kind == "durations":
        if not isinstance(value, (tuple, list)):
            raise SettingError(name, f"must be a list of durations, got {value!r}")
        for item in value:
            to_duration(name, decl, item)
    elif kind == "knots":
        check_knots(name, decl, value)


def check(instance: Any) -> None:
    """Check every declared setting of a dataclass instance (call it from ``__post_init__``)."""
    for field, decl in settings_of(type(instance)):
        check_value(field.name, decl, getattr(instance, field.name))


# -- durations: a number in the schedule's units, or "Nep" epochs ----------------------------

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ep)?\s*$", re.IGNORECASE)


def to_duration(name: str, decl: Setting, value: object) -> float | str:
    """``value`` as a duration: a number of units (steps, or epochs per ``interval``), or ``"Nep"``."""
    text: float | str
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        amount, text = float(value), value
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise SettingError(name, f"must be a duration: a number (in units of {{interval}}) or epochs like "
                                     f"10ep, got {value!r}")
        amount = float(match.group(1))
        text = str(value).strip().lower() if match.group(2) else amount
    if not (math.isfinite(amount) and _in_bounds(decl, amount)):
        raise SettingError(name, f"must be a duration {decl.rule()}, got {value!r}")
    return text


def check_knots(name: str, decl: Setting, value: object) -> None:
    if not isinstance(value, (tuple, list)) or not value:
        raise SettingError(name, f"must be POS:LR pairs, got {value!r}")
    for knot in value:
        if not isinstance(knot, (tuple, list)) or len(knot) != 2:
            raise SettingError(name, f"must be POS:LR pairs, got {knot!r}")
        to_duration(name, dataclasses.replace(decl, low=0, high=None), knot[0])
        _check_number(name, decl, knot[1], False)


# -- reading text ----------------------------------------------------------------------


def _number(text: str, whole: bool) -> float | int:
    if whole:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _parts(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise ValueError(f"{text!r} is not a comma-separated list")
    return parts


def parse(name: str, decl: Setting, text: str) -> Any:
    """The value ``text`` gives setting ``name``, checked; ValueError says what is wrong with it."""
    kind = decl.kind
    if len(text) > 1000:
        raise ValueError(f"{text[:20]!r}... is too long")
    if kind in ("int", "float"):
        value: Any = _number(text, kind == "int")
    elif kind in ("ints", "floats"):
        value = tuple(_number(part, kind == "ints") for part in _parts(text))
    elif kind == "bool":
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{text!r} is not true or false")
        value = lowered in ("true", "1", "yes")
    elif kind == "durations":
        value = tuple(_parts(text))
    elif kind == "knots":
        value = []
        for part in _parts(text):
            position, sep, lr = part.partition(":")
            if not sep:
                raise ValueError(f"{part!r} is not POS:LR")
            value.append((position.strip(), _number(lr, False)))
        value = tuple(value)
    else:
        value = text
    try:
        check_value(name, decl, value)
        if kind == "duration":
            value = to_duration(name, decl, value)
        elif kind == "durations":
            value = tuple(to_duration(name, decl, v) for v in value)
        elif kind == "knots":
            value = tuple((to_duration(name, decl, p), lr) for p, lr in value)
    except SettingError as error:
        # The setting itself is the flag argparse names; other settings by their default flag.
        raise ValueError(error.render(lambda other: "" if other == name else "--" + other.replace("_", "-")).strip()) \
            from None
    return value
