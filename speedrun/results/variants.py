"""A sweep's variants by name: the records of a sweep folder that ``compare`` and ``leaderboard`` pick.

A sweep writes one record per variant and grid cell (its label: ``one-cycle`` or
``one-cycle@batch-size=512``); a name given by a person matches a label exactly, or else every
cell of the variant of that name. A name that matches nothing (or, where one record is wanted,
several) is one line naming the flag and the labels there are.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from speedrun.errors import SpeedrunError


def sweep_label(record: dict) -> tuple[str, str] | None:
    """(label, variant) of a sweep's record; None for any other record."""
    sweep = record.get("sweep")
    if not isinstance(sweep, dict) or not isinstance(sweep.get("arm"), str):
        return None
    variant = sweep.get("variant")
    return sweep["arm"], variant if isinstance(variant, str) else sweep["arm"]


def select_variants(records: Sequence[dict], names: Iterable[str], *, flag: str, where: str,
                    one_each: bool = False) -> list[dict]:
    """The records the ``names`` pick, in the order given (see the module's docstring)."""
    labelled = [(sweep_label(r), r) for r in records]
    labelled_records = [(lv, r) for lv, r in labelled if lv is not None]
    chosen: list[dict] = []
    for name in names:
        exact = [r for (label, _), r in labelled_records if label == name]
        by_variant = [r for (_, variant), r in labelled_records if variant == name]
        found = exact or by_variant
        if not found or (one_each and len(found) > 1):
            there = sorted({label for (label, _), _ in labelled_records})
            if not there:
                raise SpeedrunError(f"{flag} {name}: {where} holds no sweep's variant records; give a sweep's folder")
            problem = "matches several records; name one" if found else "is not a variant there"
            raise SpeedrunError(f"{flag} {name}: {problem} (in {where}: {', '.join(there)})")
        chosen += [r for r in found if not any(r is c for c in chosen)]
    return chosen


def read_variant_pair(folder: str | Path, a: str, b: str) -> tuple[dict, dict]:
    """Two variants' records from a sweep folder, for ``compare DIR A B``."""
    from speedrun.results.leaderboard import load_records

    records, _ = load_records([folder])
    first, second = select_variants(records, [a, b], flag="compare", where=str(folder), one_each=True)
    return first, second
