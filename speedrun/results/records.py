"""Result records: one JSON document per invocation, written atomically, read with a schema check.

A record is the evidence behind every number speedrun reports, so it holds everything needed to
judge it: the full config, the software and hardware it ran on, each run's per-epoch curve and
time-to-target, the GPU telemetry, and the summary statistics. Readers (leaderboard, compare,
plot) validate a record before trusting it and name the file and field when it is malformed.

The schema (version 2) is declared as types in :mod:`speedrun.results.schema`; every write and
every read checks it. What its fields mean beyond their types:

* ``complete`` / ``runs_planned``: a record is rewritten after every run; until the last it says
  ``complete: false``, so a killed command leaves a valid record of the runs it finished
  (version 1 records lack both and are complete). An anchor plans ``runs_planned`` per side.
* ``flops``: the full budget's arithmetic on the record's data sizes (:mod:`speedrun.analysis.flops`).
* ``setup``: the untimed data move and rehearsal (compilation and first use).
* ``nvml`` (top level): whether any run had telemetry, the first reason one had none, and each
  field some run could not read with its first reason (``missing``). A run's ``nvml`` is
  :meth:`speedrun.instruments.telemetry.NvmlSampler.summary`: a field whose query failed is null in
  the samples that lack it, and its ``{mean, max, n}`` is over those that have it.
* ``summary``: :class:`speedrun.results.stats.Summary` dicts of accuracy and time-to-target.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from speedrun.errors import RecordError
from speedrun.outputs import write_text_atomically
from speedrun.results.schema import Record, check_shape

SCHEMA_NAME = "speedrun.record"
# Where records go, and where the record commands look, by default: a folder git ignores, so scratch
# runs never mix with the curated records committed under results/.
DEFAULT_RESULTS_DIR = "runs"
SCHEMA_VERSION = 2
MAX_RECORD_BYTES = 256 * 2**20   # a 10,000-run record is a few hundred MB short of this
SWEEP_OWNER_NAME = "sweep.json"   # a sweep folder's owner file (speedrun.sweeps.store); its logs/ is Ray Tune's
RUN_PIECE_SUFFIX = ".run.json"     # a sweep's one-run pieces, merged into its records (speedrun.sweeps)

def utc_now() -> str:
    """Timestamp for ``created``: ISO-8601 in UTC, seconds precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def default_record_path(out_dir: str | os.PathLike, recipe: str, kind: str = "train") -> Path:
    """A fresh file name under ``out_dir`` that sorts by time and never overwrites."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path(out_dir) / f"{stamp}-{kind}-{recipe}"
    path = base.with_suffix(".json")
    n = 1
    while path.exists():
        path = Path(f"{base}-{n}.json")
        n += 1
    return path


def _reject_non_finite(value: Any) -> None:
    raise ValueError(f"non-finite number {value!r} in record")


def write_record(record: dict, path: str | os.PathLike, *, exclusive: bool = False) -> Path:
    """Write ``record`` as JSON atomically: a temp file in the same folder, then rename.

    A crash mid-write leaves either the old file or none, never half a record. ``exclusive``
    refuses to replace an existing file (FileExistsError). Non-finite floats must be turned into
    null (with the run marked failed) before writing: JSON has no NaN, and a record with one
    would be unreadable by strict parsers.
    """
    text = record_text(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, text, exclusive=exclusive)
    return path


def record_text(record: dict) -> str:
    """The record as the JSON text written, after checking it against the schema."""
    validate_record(record, source="record to write")
    return json.dumps(record, indent=1, allow_nan=False, sort_keys=False) + "\n"


def is_complete(record: dict) -> bool:
    """False for a record cut short before its last run (version 1 records are always complete)."""
    return bool(record.get("complete", True))


def completeness_note(record: dict) -> str:
    """'' for a complete record, else e.g. 'incomplete record: 3 of 8 planned runs (cut short)'."""
    if is_complete(record):
        return ""
    planned = record.get("runs_planned")
    sides = record.get("sides")
    done = min(len(side.get("runs", [])) for side in sides) if isinstance(sides, list) and sides else len(record["runs"])
    of = f" of {planned} planned" if isinstance(planned, int) else ""
    return f"incomplete record: {done}{of} runs{' a side' if isinstance(sides, list) and sides else ''} (cut short)"


def read_record(path: str | os.PathLike) -> dict:
    """Read and validate one record; :class:`RecordError` names the file and the problem."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise RecordError(f"{path}: {path.stat().st_size / 1e6:.0f} MB is too large for a record; not read")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(f"{path}: no such record file; pass a path to a speedrun JSON record") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: cannot read record ({e.__class__.__name__}: {e})") from None
    try:
        record = json.loads(text, parse_constant=_reject_non_finite)
    except RecursionError:
        raise RecordError(f"{path}: not a speedrun record (JSON nested too deeply to read)") from None
    except ValueError as e:
        raise RecordError(f"{path}: not a valid JSON record ({str(e)[:200]}); was it cut short?") from None
    validate_record(record, source=str(path))
    return record


def find_record_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, ``*.json``) into a sorted list of record paths.

    A folder's sweep pieces (``*.run.json``: one run each, or a tuning trial) are left out: the
    sweep merges its runs into one record per variant beside them, which is what is read. So are
    a sweep folder's own files: its ``sweep.json`` and the Ray Tune logs under its ``logs/``. A
    piece named on its own is read like any record.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            sweeps = {q.parent for q in p.rglob(SWEEP_OWNER_NAME)}
            found.extend(sorted(q for q in p.rglob("*.json") if q.is_file() and not q.name.endswith(RUN_PIECE_SUFFIX)
                                and not _sweep_own_file(q, sweeps)))
        elif p.exists():
            found.append(p)
        else:
            raise RecordError(f"{p}: no such file or folder; pass record files or a folder of them")
    return found


def _sweep_own_file(path: Path, sweeps: set[Path]) -> bool:
    """A sweep folder's ``sweep.json``, or a file under its ``logs/`` (Ray Tune's)."""
    return (path.name == SWEEP_OWNER_NAME and path.parent in sweeps) or any(
        folder in sweeps and path.relative_to(folder).parts[0] == "logs" for folder in path.parents)


def _check_finite(obj: Any, where: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise RecordError(f"{where}: non-finite number {obj!r}")
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > 2**63:
        raise RecordError(f"{where}: the number {str(obj)[:20]}... is too large for any field of a record")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")


def validate_record(record: Any, source: str = "record") -> None:
    """Raise :class:`RecordError` unless ``record`` follows the schema (:mod:`speedrun.results.schema`)."""
    if not isinstance(record, dict):
        raise RecordError(f"{source}: expected a JSON object at the top level")
    if record.get("schema") != SCHEMA_NAME:
        raise RecordError(f"{source}: not a speedrun record (field 'schema' is {repr(record.get('schema'))[:40]})")
    version = record.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise RecordError(
            f"{source}: schema_version {version} is newer than this speedrun understands "
            f"({SCHEMA_VERSION}); upgrade speedrun to read it"
        )
    check_shape(record, Record, source)
    if isinstance(version, int) and version >= 2:
        for key in ("complete", "runs_planned"):
            if key not in record:
                raise RecordError(f"{source}: missing field '{key}'")
    if not 0 < record["target"] <= 1:
        raise RecordError(f"{source}: field 'target' must be an accuracy in (0, 1], got {record['target']}")
    _check_finite(record, source)
