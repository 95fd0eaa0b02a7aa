"""A sweep spec: the TOML file a person writes to ask for many seeded runs and variants.

The spec speaks the train command's language, so nothing new is learned to write one: every
setting is a ``speedrun train`` flag by its long name, without the dashes::

    name = "policies"            # optional; the spec file's stem by default
    seeds = 3                    # or a list of seeds: [0, 1, 2]
    baseline = "multistep"       # optional: every variant is compared against it at the end

    [base]                       # flags every run gets
    recipe = "classic"
    full-budget = true           # a switch: true gives --full-budget, false its --no- form

    [variants.one-cycle]         # one named variant: its own flags over the base's
    schedule = "one_cycle_lr"
    max-lr = 0.4

    [variants.one-cycle.search]  # optional, with [tune]: the variant's own search space
    max-lr = { low = 0.05, high = 2.0, log = true }

    [grid]                       # optional: crossed with every variant
    batch-size = [256, 512]

    [tune]                       # optional: equal-budget tuning before the seeded runs
    trials = 8                   # the same number for every variant
    sampler = "tpe"              # or "random"
    seed = 10000                 # the trials' training seed, never one of the sweep's seeds
    early-stop = true            # optional: ASHA ends trials that trail at its rungs
    grace-epochs = 1             # ... after at least this many epochs (reduction-factor = 2: half go on)

A value is a string, a number or a boolean; a list gives a flag several values. A search
dimension is ``{low, high, log?, int?}`` or ``{choices = [...]}``. The flags the sweep sets
itself (runs, seeds, record paths, device) are refused in a spec. Reading a spec checks its
shape; :func:`speedrun.sweeps.plan.plan_sweep` then checks every run's flags with the train
command's own parser, so a bad spec fails in one line before anything runs.
"""
from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedrun.errors import SpeedrunError

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # the sweep extra brings tomli, tomllib's original, on 3.10
    import tomli as tomllib

FlagValue = str | int | float | bool | tuple[str | int | float, ...]

# Flags a sweep sets itself, per run, so a spec may not.
RESERVED_FLAGS = ("runs", "seed", "out", "no-record", "force", "device", "recipe-from")
SAMPLERS = ("tpe", "random")
METRICS = ("accuracy",)      # the mean final test accuracy over a trial's runs, maximized
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
    """Equal-budget tuning: ``trials`` trials per variant, each trained with ``seed``; with
    ``early_stop``, ASHA stops trailing trials after ``grace_epochs`` epochs."""

    trials: int
    sampler: str = "tpe"
    metric: str = "accuracy"
    seed: int = 10_000
    early_stop: bool = False
    grace_epochs: int = 1
    reduction_factor: int = 2


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


def _seeds(value: Any, fail) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise fail("seeds", f"must be at least 1, got {value}")
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                 for s in value):
        if len(set(value)) != len(value):
            raise fail("seeds", f"lists a seed twice: {value}")
        return tuple(value)
    raise fail("seeds", f"must be a count (3) or a list of seeds ([0, 1, 2]), got {value!r}")


def _flags(table: Any, where: str, fail) -> dict[str, FlagValue]:
    if not isinstance(table, dict):
        raise fail(where, "must be a table of flags (name = value)")
    out: dict[str, FlagValue] = {}
    for key, value in table.items():
        out[_flag_name(key, where, fail)] = _flag_value(value, f"{where} {key}", fail)
    return out


def _flag_name(key: str, where: str, fail) -> str:
    flag = key[2:] if key.startswith("--") else key
    if flag in RESERVED_FLAGS:
        raise fail(f"{where} {key}", "is set by the sweep itself (its seeds, records and devices); remove it")
    return flag


def _flag_value(value: Any, where: str, fail) -> FlagValue:
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise fail(where, f"must be a finite number, got {value}")
        return value
    if isinstance(value, list) and value and all(isinstance(v, str | int | float) and not isinstance(v, bool)
                                                 for v in value):
        return tuple(value)
    raise fail(where, f"must be a string, a number, a boolean or a list of them, got {value!r}")


def _variant(name: str, table: Any, fail) -> Variant:
    where = f"[variants.{name}]"
    if not _NAME.match(name):
        raise fail(where, "needs a plain name (letters, digits, . _ + -) to name its record")
    if not isinstance(table, dict):
        raise fail(where, "must be a table of flags")
    table = dict(table)
    search = table.pop("search", None)
    dims = () if search is None else _search(search, f"{where[:-1]}.search]", fail)
    return Variant(name, _flags(table, where, fail), dims)


def _search(table: Any, where: str, fail) -> tuple[SearchDimension, ...]:
    if not isinstance(table, dict) or not table:
        raise fail(where, "must be a table of flag = { low, high, log } or flag = { choices = [...] }")
    dims = []
    for key, d in table.items():
        flag = _flag_name(key, where, fail)
        at = f"{where} {key}"
        if not isinstance(d, dict):
            raise fail(at, "must be { low = ..., high = ..., log = true } or { choices = [...] }")
        extra = set(d) - {"low", "high", "log", "int", "choices"}
        if extra:
            raise fail(at, f"has unknown key {sorted(extra)[0]!r}; use low, high, log, int or choices")
        if "choices" in d:
            choices = d["choices"]
            if set(d) != {"choices"} or not isinstance(choices, list) or not choices:
                raise fail(at, "choices must be a non-empty list, alone")
            dims.append(SearchDimension(flag, choices=tuple(choices)))
            continue
        low, high = _finite_number(d.get("low")), _finite_number(d.get("high"))
        if low is None or high is None:
            raise fail(at, "needs numbers low and high")
        log, integer = d.get("log", False), d.get("int", False)
        if not isinstance(log, bool) or not isinstance(integer, bool):
            raise fail(at, "log and int must be true or false")
        if not low < high:
            raise fail(at, f"needs low < high, got {low} and {high}")
        if log and low <= 0:
            raise fail(at, f"a log range needs low > 0, got {low}")
        dims.append(SearchDimension(flag, low, high, log, integer))
    return tuple(dims)


def _finite_number(x: Any) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def _grid(table: Any, fail) -> dict[str, tuple[FlagValue, ...]]:
    if not isinstance(table, dict):
        raise fail("[grid]", "must be a table of flag = [values]")
    grid: dict[str, tuple[FlagValue, ...]] = {}
    for key, values in table.items():
        flag = _flag_name(key, "[grid]", fail)
        if not isinstance(values, list) or not values:
            raise fail(f"[grid] {key}", f"must be a non-empty list of values, got {values!r}")
        grid[flag] = tuple(_flag_value(v, f"[grid] {key}", fail) for v in values)
        if len(set(map(repr, grid[flag]))) != len(values):
            raise fail(f"[grid] {key}", f"lists a value twice: {values}")
    return grid


def _tune(table: Any, fail) -> TuneSpec | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise fail("[tune]", "must be a table (trials, sampler, seed)")
    keys = ("trials", "sampler", "metric", "seed", "early-stop", "grace-epochs", "reduction-factor")
    extra = set(table) - set(keys)
    if extra:
        raise fail(f"[tune] {sorted(extra)[0]}", f"is not a tune key; the keys are {', '.join(keys)}")
    trials: Any = table.get("trials")
    if not _whole(trials, 1):
        raise fail("[tune] trials", f"must be a whole number of trials per variant, at least 1, got {trials!r}")
    sampler = table.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise fail("[tune] sampler", f"must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    metric = table.get("metric", "accuracy")
    if metric not in METRICS:
        raise fail("[tune] metric", f"must be one of {', '.join(METRICS)}, got {metric!r}")
    seed = table.get("seed", 10_000)
    if not _whole(seed, 0):
        raise fail("[tune] seed", f"must be a seed (a whole number >= 0), got {seed!r}")
    early_stop = table.get("early-stop", False)
    if not isinstance(early_stop, bool):
        raise fail("[tune] early-stop", f"must be true or false, got {early_stop!r}")
    grace, factor = table.get("grace-epochs", 1), table.get("reduction-factor", 2)
    if not _whole(grace, 1):
        raise fail("[tune] grace-epochs", f"must be a whole number of epochs, at least 1, got {grace!r}")
    if not _whole(factor, 2):
        raise fail("[tune] reduction-factor", f"must be a whole number, at least 2, got {factor!r}")
    return TuneSpec(trials, sampler, metric, seed, early_stop, grace, factor)


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= 10**9
