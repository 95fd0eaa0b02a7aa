"""What DAWNBench's submission checks require of a folder of CIFAR-10 training entries, written here.

DAWNBench (github.com/stanford-futuredata/dawn-bench-entries) runs pytest on every pull request:
tests/test_submissions.py there, which needs pandas, treats every ``CIFAR10/train/*.json`` as an
entry and requires, per entry:

* the JSON parses;
* it has the fields version, author, authorEmail, framework, model, hardware and timestamp
  (present: a null passes); timestamp parses as ``%Y-%m-%d``; version is one DAWNBench knows
  (only ``v1.0``);
* a TSV with the JSON's name (``x.json`` -> ``x.tsv``) exists, its header holds exactly the
  columns epoch, hours and top1Accuracy (in any order), and it has at least one row;
* for a ``v1.0`` entry, the TSV's highest top1Accuracy is at least 94.

``check_entries`` checks the same, without pandas. ``readme=True`` adds what DAWNBench's README
asks but its tests do not check (numbers in every cell, a JSON object, epochs rising, hours never
falling, accuracy a percent, the optional fields' types); ``threshold=False`` leaves out the 94%
check, for entries whose format alone is under test. Every failure is an AssertionError naming
the file and what is wrong.
"""
from __future__ import annotations

import csv
import json
from datetime import datetime
from itertools import pairwise
from pathlib import Path

VERSIONS = ("v1.0",)
REQUIRED_FIELDS = ("version", "author", "authorEmail", "framework", "model", "hardware", "timestamp")
TSV_COLUMNS = ("epoch", "hours", "top1Accuracy")
THRESHOLD = {"v1.0": 94.0}          # top1Accuracy (percent) a CIFAR-10 training entry must reach


def check_entries(folder: str | Path, *, threshold: bool = True, readme: bool = True) -> list[str]:
    """Check every ``*.json`` in ``folder`` as a DAWNBench CIFAR-10 training entry; return their
    names (stems). An empty folder fails too: it would submit nothing."""
    folder = Path(folder)
    entries = sorted(folder.glob("*.json"))
    assert entries, f"{folder} holds no DAWNBench entry (*.json)"
    for path in entries:
        check_entry(path, threshold=threshold, readme=readme)
    return [path.stem for path in entries]


def check_entry(path: Path, *, threshold: bool = True, readme: bool = True) -> None:
    """One entry: ``path`` (its JSON) and the TSV of the same name."""
    meta = _metadata(path)
    if readme:
        _check_readme_metadata(path, meta)
    rows = _rows(path.with_suffix(".tsv"))
    if readme:
        _check_readme_rows(path.with_suffix(".tsv"), rows)
    if threshold and meta["version"] in THRESHOLD:
        need = THRESHOLD[meta["version"]]
        best = max(_number(path.with_suffix(".tsv"), row, "top1Accuracy") for row in rows)
        assert best >= need, (f"{path.with_suffix('.tsv').name}: top1Accuracy never reaches {need:g} (best {best:g}); "
                              f"DAWNBench refuses a {meta['version']} CIFAR-10 training entry below it")


def _metadata(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except ValueError as error:
        raise AssertionError(f"{path.name} is not valid JSON ({error})") from None
    assert isinstance(meta, dict), f"{path.name} holds a JSON {type(meta).__name__}, not an object"
    missing = [field for field in REQUIRED_FIELDS if field not in meta]
    assert not missing, f"{path.name} lacks the required field(s) {', '.join(missing)}"
    try:
        datetime.strptime(meta["timestamp"], "%Y-%m-%d")
    except (TypeError, ValueError):
        raise AssertionError(f"{path.name}: timestamp {meta['timestamp']!r} is not yyyy-mm-dd") from None
    assert meta["version"] in VERSIONS, f"{path.name}: version {meta['version']!r} is not one of {VERSIONS}"
    return meta


def _rows(tsv: Path) -> list[dict[str, str]]:
    assert tsv.is_file(), (f"{tsv.name} does not exist: DAWNBench reads each entry's results from the TSV named "
                           f"like its JSON")
    lines = [line for line in tsv.read_text().splitlines() if line.strip()]
    assert lines, f"{tsv.name} is empty: it needs the header {' '.join(TSV_COLUMNS)}"
    header = lines[0].split("\t")
    assert sorted(header) == sorted(TSV_COLUMNS), (f"{tsv.name}: the columns are {header}, not "
                                                   f"{list(TSV_COLUMNS)} (tab-separated)")
    assert len(lines) > 1, f"{tsv.name} has a header and no row"
    return list(csv.DictReader(lines, delimiter="\t"))


def _number(tsv: Path, row: dict[str, str], column: str) -> float:
    value = row.get(column)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AssertionError(f"{tsv.name}: {column} {value!r} is not a number (row {row})") from None


def _check_readme_metadata(path: Path, meta: dict) -> None:
    for field in ("codeURL", "logFilename"):
        assert meta.get(field) is None or isinstance(meta[field], str), f"{path.name}: {field} is not text"
    cost = meta.get("costPerHour", 0)
    assert isinstance(cost, (int, float)) and not isinstance(cost, bool), (f"{path.name}: costPerHour {cost!r} is not "
                                                                             f"a number (leave it out if unknown)")
    assert isinstance(meta.get("misc", {}), dict), f"{path.name}: misc is not a JSON object"


def _check_readme_rows(tsv: Path, rows: list[dict[str, str]]) -> None:
    assert all(len(row) == len(TSV_COLUMNS) and None not in row.values() for row in rows), \
        f"{tsv.name}: a row does not have exactly {len(TSV_COLUMNS)} cells"
    epochs = [_number(tsv, row, "epoch") for row in rows]
    hours = [_number(tsv, row, "hours") for row in rows]
    accuracy = [_number(tsv, row, "top1Accuracy") for row in rows]
    assert all(a < b for a, b in pairwise(epochs)), f"{tsv.name}: epochs do not rise: {epochs}"
    assert hours[0] >= 0 and all(a <= b for a, b in pairwise(hours)), f"{tsv.name}: hours fall back: {hours}"
    assert all(0 <= a <= 100 for a in accuracy), f"{tsv.name}: top1Accuracy is not a percent (0-100): {accuracy}"
