"""A spec expanded into the runs it asks for, each checked and named for good.

Every run has a stable id, ``<label>/seed-<seed>``, where the label is the variant's name, with
the grid point it stands at (``one-cycle@batch-size=512``) when the spec has a grid. The id names
the run's file in the sweep's folder, which is what makes a sweep resumable: the same spec gives
the same ids, so a finished run is found and skipped.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from speedrun.errors import SpeedrunError
from speedrun.overrides import TrainSettings, settings_from_flags
from speedrun.sweeps.spec import FlagValue, SearchDimension, SpecError, SweepSpec, Variant

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=,@-]")


@dataclass(frozen=True)
class Arm:
    """One variant at one grid point: what gets seeded runs (and, when tuned, trials)."""

    label: str
    variant: Variant
    flags: tuple[str, ...]          # base, then grid point, then the variant's own: later ones win
    cell: Mapping[str, FlagValue] = field(default_factory=dict)     # the grid point, flag -> value

    @property
    def search(self) -> tuple[SearchDimension, ...]:
        return self.variant.search

    @property
    def cell_text(self) -> str:
        """The grid point as a person reads it: ``batch-size=512, cutout=8`` ("" without a grid)."""
        return ", ".join(f"{k}={_text(v)}" for k, v in self.cell.items())


@dataclass(frozen=True)
class PlannedRun:
    """One seeded training run: ``speedrun train <flags> --seed <seed> --runs 1``."""

    run_id: str
    label: str
    seed: int
    flags: tuple[str, ...]


def flag_words(flags: Mapping[str, FlagValue]) -> list[str]:
    """Spec flags as command-line words: ``true`` is the switch, ``false`` its ``--no-`` form."""
    words: list[str] = []
    for name, value in flags.items():
        if value is True:
            words.append(f"--{name}")
        elif value is False:
            words.append(f"--{name[3:]}" if name.startswith("no-") else f"--no-{name}")
        elif isinstance(value, tuple):
            words += [f"--{name}", *map(str, value)]
        else:
            words += [f"--{name}", str(value)]
    return words


def arms(spec: SweepSpec) -> list[Arm]:
    """The spec's variants crossed with its grid, in the spec's order."""
    points: list[dict[str, FlagValue]] = [dict(zip(spec.grid, values))
                                          for values in itertools.product(*spec.grid.values())]
    out = []
    for variant in spec.variants:
        for point in points:
            label = variant.name + ("@" + ",".join(f"{k}={_text(v)}" for k, v in point.items()) if point else "")
            flags = (*flag_words(spec.base), *flag_words(point), *flag_words(variant.flags))
            out.append(Arm(_UNSAFE.sub("_", label), variant, tuple(flags), point))
    return out


def _text(value: FlagValue) -> str:
    return "+".join(map(str, value)) if isinstance(value, tuple) else str(value)


def planned_runs(arm: Arm, seeds: Sequence[int], extra: Sequence[str] = ()) -> list[PlannedRun]:
    return [PlannedRun(f"{arm.label}/seed-{seed}", arm.label, seed, (*arm.flags, *extra)) for seed in seeds]


def search_probe(dims: Sequence[SearchDimension]) -> list[str]:
    """Flags at a point inside each search dimension, to check a tuned variant's flags."""
    values: dict[str, FlagValue] = {}
    for d in dims:
        if d.choices:
            values[d.flag] = d.choices[0]
        else:
            assert d.low is not None and d.high is not None
            mid = (d.low * d.high) ** 0.5 if d.log else (d.low + d.high) / 2
            values[d.flag] = round(mid) if d.integer else mid
    return flag_words(values)


def check_flags(spec: SweepSpec, all_arms: Sequence[Arm]) -> dict[str, TrainSettings]:
    """Parse every arm's flags as ``speedrun train`` would; every bad arm is named in one
    :class:`SpecError`. Returns each arm's settings (at a point of its search space, when tuned)."""
    parsed, problems = {}, []
    for arm in all_arms:
        probe = search_probe(arm.search)
        try:
            parsed[arm.label] = settings_from_flags([*arm.flags, *probe], resolve_auto=False)
        except SpeedrunError as e:
            where = f"variant {arm.label!r}" + (" (with a point of its search space)" if probe else "")
            problems.append(f"{where}: {e}")
    if problems:
        more = f" ({len(problems)} problems)" if len(problems) > 1 else ""
        raise SpecError(f"{spec.source}{more}: " + "; ".join(problems))
    return parsed
