"""A sweep spec: the TOML file a person writes to ask for many seeded runs and variants.

Every key of ``[base]``, ``[variants.NAME]`` and ``[grid]`` is a ``speedrun train`` flag without
its dashes (``true`` the switch, ``false`` its ``--no-`` form, a list several values); a
variant's ``search`` table is its tuning space and ``[tune]`` a :class:`TuneSpec` (README:
Sweeps). Reading checks the shape; :func:`speedrun.sweeps.plan.check_flags` then reads every
run's flags with the train command's own parser, before anything runs.
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedrun.errors import SettingError, SpeedrunError
from speedrun.settings import check, setting

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # the sweep extra brings tomli, tomllib's original, on 3.10
    import tomli as tomllib

FlagValue = str | int | float | bool | tuple[str | int | float, ...]

# Flags a sweep sets itself, per run, so a spec may not.
RESERVED_FLAGS = ("runs", "seed", "out", "no-record", "force", "device", "recipe-from")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_TOP_KEYS = ("name", "seeds", "baseline", "base", "variants", "grid", "tune")


class SpecError(SpeedrunError):
    """A sweep spec is malformed; the message names the spec, the place and the fix."""


@dataclass(frozen=True)
class SearchDimension:
    """One flag's range in a variant's search space."""

    flag: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[str | int | float | bool, ...] = ()


@dataclass(frozen=True)
class Variant:
    """A named set of flags over the base; ``search`` is its tuning space (empty: not tuned)."""

    name: str
    flags: Mapping[str, FlagValue]
    search: tuple[SearchDimension, ...] = ()


@dataclass(frozen=True)
class TuneSpec:
    """Equal-budget tuning (``[tune]``): the same trials for every variant, with its own seed."""

    trials: int = setting(1, "trials per variant", low=1, high=10**6)
    sampler: str = setting("tpe", "Optuna's sampler", choices=("tpe", "random"))
    metric: str = setting("accuracy", "what a trial maximizes: its final test accuracy", choices=("accuracy",))
    seed: int = setting(10_000, "the trials' training seed, never one of the sweep's seeds", low=0, high=2**31 - 1)
    early_stop: bool = setting(False, "ASHA ends the trials that trail at its rungs (epochs)")
    grace_epochs: int = setting(1, "epochs every trial trains before it may be stopped", low=1, high=10**6)
    reduction_factor: int = setting(2, "1 in this many trials goes on at each rung", low=2, high=100)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    seeds: tuple[int, ...]
    base: Mapping[str, FlagValue]
    variants: tuple[Variant, ...]
    grid: Mapping[str, tuple[FlagValue, ...]] = field(default_factory=dict)
    baseline: str | None = None
    tune: TuneSpec | None = None
    source: str = "spec"


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file (:class:`SpecError` naming the file and the place when bad)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such sweep spec; give the path of a .toml file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the sweep spec ({e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    return parse_spec(data, source=str(path), default_name=path.stem)


def parse_spec(data: Mapping[str, Any], *, source: str = "spec", default_name: str = "sweep") -> SweepSpec:
    """A spec from already-parsed TOML data (what :func:`load_spec` reads)."""
    def fail(where: str, problem: str) -> SpecError:
        return SpecError(f"{source}: {where} {problem}")

    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise fail(f"'{unknown[0]}'", f"is not a spec key; the keys are {', '.join(_TOP_KEYS)}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name", f"must be a plain name (letters, digits, . _ + -), got {name!r}")
    seeds = _seeds(data.get("seeds", 1), fail)
    base = _flags(data.get("base", {}), "[base]", fail)
    variants_table = data.get("variants")
    if variants_table is None:
        variants: tuple[Variant, ...] = (Variant("base", {}),)
    elif not isinstance(variants_table, dict) or not variants_table:
        raise fail("[variants]", "is empty; give at least one [variants.NAME] table, or none for the base alone")
    else:
        variants = tuple(_variant(n, v, fail) for n, v in variants_table.items())
    grid = _grid(data.get("grid", {}), fail)
    baseline = data.get("baseline")
    if baseline is not None and baseline not in {v.name for v in variants}:
        raise fail("baseline", f"{baseline!r} is not a variant; the variants are {', '.join(v.name for v in variants)}")
    tune = _tune(data.get("tune"), fail)
    if tune is not None and tune.seed in seeds:
        raise fail("[tune] seed", f"{tune.seed} is one of the sweep's seeds, so a reported run would repeat a tuned-on "
                                  f"trial; give a seed outside them")
    if tune is None and any(v.search for v in variants):
        raise fail("[variants.*.search]", "needs a [tune] table saying how many trials each variant gets")
    if tune is not None and not any(v.search for v in variants):
        raise fail("[tune]", "has no search space: give a [variants.NAME.search] table")
    return SweepSpec(name, seeds, base, variants, grid, baseline, tune, source)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seeds(value: Any, fail) -> tuple[int, ...]:
    if _whole(value) and value < 1:
        raise fail("seeds", f"must be at least 1, got {value}")
    if _whole(value):
        return tuple(range(value))
    if isinstance(value, list) and value and all(_whole(s) and s >= 0 for s in value):
        if len(set(value)) == len(value):
            return tuple(value)
        raise fail("seeds", f"lists a seed twice: {value}")
    raise fail("seeds", f"must be a count (3) or a list of seeds ([0, 1, 2]), got {value!r}")


def _flags(table: Any, where: str, fail) -> dict[str, FlagValue]:
    if not isinstance(table, dict):
        raise fail(where, "must be a table of flags (name = value)")
    return {_flag_name(key, where, fail): _flag_value(value, f"{where} {key}", fail) for key, value in table.items()}


def _flag_name(key: str, where: str, fail) -> str:
    flag = key.removeprefix("--")
    if flag in RESERVED_FLAGS:
        raise fail(f"{where} {key}", "is set by the sweep itself (its seeds, records and devices); remove it")
    return flag


def _flag_value(value: Any, where: str, fail) -> FlagValue:
    scalar = (str, int, float)
    if isinstance(value, list) and value and all(isinstance(v, scalar) and not isinstance(v, bool) for v in value):
        value = tuple(value)
    elif isinstance(value, dict):
        # TOML reads a dot in a table's name as nesting: [variants.lr-0.2] is variant "lr-0" holding table "2".
        raise fail(where, "is a table, not a flag's value; a name with a dot needs quotes, as in "
                          '[variants."lr-0.2"]')
    elif not isinstance(value, scalar):          # bool is an int
        raise fail(where, f"must be a string, a number, a boolean or a list of them, got {value!r}")
    if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))):
        raise fail(where, f"must be finite numbers, got {value}")
    return value


def _variant(name: str, table: Any, fail) -> Variant:
    where = f"[variants.{name}]"
    if not _NAME.match(name):
        raise fail(where, "needs a plain name (letters, digits, . _ + -) to name its record")
    if not isinstance(table, dict):
        raise fail(where, "must be a table of flags")
    flags = {k: v for k, v in table.items() if k != "search"}
    search = () if "search" not in table else _search(table["search"], f"[variants.{name}.search]", fail)
    return Variant(name, _flags(flags, where, fail), search)


def _search(table: Any, where: str, fail) -> tuple[SearchDimension, ...]:
    if not isinstance(table, dict) or not table:
        raise fail(where, "must be a table of flag = { low, high, log } or flag = { choices = [...] }")
    dims = []
    for key, d in table.items():
        at, flag = f"{where} {key}", _flag_name(key, where, fail)
        extra = sorted(set(d) - {"low", "high", "log", "int", "choices"}) if isinstance(d, dict) else ["(not a table)"]
        if extra:
            raise fail(at, f"has unknown key {extra[0]!r}: give {{ low, high, log, int }} or {{ choices = [...] }}")
        if "choices" in d:
            if set(d) != {"choices"} or not isinstance(d["choices"], list) or not d["choices"]:
                raise fail(at, "choices must be a non-empty list, alone")
            dims.append(SearchDimension(flag, choices=tuple(d["choices"])))
            continue
        low, high, log, integer = d.get("low"), d.get("high"), d.get("log", False), d.get("int", False)
        if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in (low, high)):
            raise fail(at, "needs numbers low and high")
        if not isinstance(log, bool) or not isinstance(integer, bool):
            raise fail(at, "log and int must be true or false")
        if not low < high:
            raise fail(at, f"needs low < high, got {low} and {high}")
        if log and low <= 0:
            raise fail(at, f"a log range needs low > 0, got {low}")
        dims.append(SearchDimension(flag, float(low), float(high), log, integer))
    return tuple(dims)


def _grid(table: Any, fail) -> dict[str, tuple[FlagValue, ...]]:
    if not isinstance(table, dict):
        raise fail("[grid]", "must be a table of flag = [values]")
    grid: dict[str, tuple[FlagValue, ...]] = {}
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise fail(f"[grid] {key}", f"must be a non-empty list of values, got {values!r}")
        grid[_flag_name(key, "[grid]", fail)] = tuple(_flag_value(v, f"[grid] {key}", fail) for v in values)
        if len(set(map(repr, values))) != len(values):
            raise fail(f"[grid] {key}", f"lists a value twice: {values}")
    return grid


def _tune(table: Any, fail) -> TuneSpec | None:
    if table is None:
        return None
    keys = {f.name.replace("_", "-"): f.name for f in dataclasses.fields(TuneSpec)}
    if not isinstance(table, dict) or "trials" not in table:
        raise fail("[tune]", "must be a table saying how many trials each variant gets (trials = N)")
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise fail(f"[tune] {unknown[0]}", f"is not a tune key; the keys are {', '.join(keys)}")
    try:
        return TuneSpec(**{keys[k]: v for k, v in table.items()})
    except SettingError as e:
        raise fail("[tune]", e.render(lambda name: name.replace("_", "-"))) from None
