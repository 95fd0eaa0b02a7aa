"""The record schema as types: what every writer builds and every reader checks.

A record is JSON, so its shape is declared here once as ``TypedDict`` classes; the harness's
record builders are typed with them, and :func:`check_shape` walks the same declarations to
validate a record read from disk, naming the file and the field of anything of the wrong type.
Fields that are not declared are allowed (a record may carry more, e.g. an anchor's sides).
"""
# No "from __future__ import annotations": TypedDict reads NotRequired from evaluated annotations.

import sys
import types
import typing
from typing import Annotated, Any, Literal

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict, get_type_hints, is_typeddict
else:                                               # Python 3.10: torch brings typing_extensions
    from typing_extensions import NotRequired, TypedDict, get_type_hints, is_typeddict

from speedrun.errors import RecordError

RUN_STATUSES = ("ok", "diverged", "failed")
Accuracy = Annotated[float, (0.0, 1.0)]         # a share of test images
Seconds = Annotated[float, (0.0, 1e9)]          # a duration; past 30 years is a corrupt record, not a run
Count = Annotated[int, (0, 10**9)]              # epochs, steps, runs
Seed = Annotated[int, (0, 2**63 - 1)]


class EpochEntry(TypedDict):
    epoch: Count
    train_loss: float | None          # None: non-finite
    elapsed_s: Seconds
    lr: NotRequired[float | None]
    train_acc: NotRequired[Accuracy | None]
    test_acc: NotRequired[Accuracy | None]


class RunEntry(TypedDict):
    seed: Seed
    status: Literal["ok", "diverged", "failed"]
    epochs: list[EpochEntry]
    reached_target: bool
    final_test_acc: NotRequired[Accuracy | None]
    time_to_target_s: NotRequired[Seconds | None]
    train_time_s: NotRequired[Seconds | None]
    error: NotRequired[str | None]
    nvml: NotRequired[dict[str, Any]]
    extension: NotRequired[dict[str, Any]]     # SWA / snapshot ensemble: what it did, single-model accuracy, gain


class ScheduleEntry(TypedDict, total=False):
    name: str
    interval: str
    steps: Count
    steps_per_epoch: Count | None
    lr: list[float]
    momentum: list[float] | None
    params: dict[str, Any]


class SummaryEntry(TypedDict):
    runs: Count
    reached: Count


class DatasetEntry(TypedDict):
    name: str
    origin: NotRequired[str | None]
    train_size: NotRequired[int]
    test_size: NotRequired[int]


class EnvironmentEntry(TypedDict, total=False):
    device: str | None
    gpu_name: str | None
    git_commit: str | None


class AnchorSideEntry(TypedDict):
    label: str
    runs: list[RunEntry]
    summary: NotRequired[dict[str, Any]]


class Record(TypedDict):
    schema: str
    schema_version: int
    kind: str
    created: str
    recipe: str
    target: float
    config: dict[str, Any]
    dataset: DatasetEntry
    environment: EnvironmentEntry
    timer_rule: str
    runs: list[RunEntry]
    summary: SummaryEntry
    complete: NotRequired[bool]           # required from schema version 2
    runs_planned: NotRequired[Count]      # required from schema version 2
    command: NotRequired[list[str]]
    target_source: NotRequired[str | None]
    schedule: NotRequired[ScheduleEntry]
    nvml: NotRequired[dict[str, Any]]
    flops: NotRequired[dict[str, Any]]
    setup: NotRequired[dict[str, Any]]
    sweep: NotRequired[dict[str, Any]]
    sides: NotRequired[list[AnchorSideEntry]]       # an anchor record's two distributions
    interrupted: NotRequired[bool]                  # stopped by Ctrl-C or SIGTERM after a run had started


def _name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if hint is float:
        return "a number"
    if typing.get_origin(hint) is Annotated:
        base, (low, high) = typing.get_args(hint)
        return f"{_name(base)} from {low:g} to {high:g}"
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_name(h) for h in typing.get_args(hint))
    if origin is not None:
        return origin.__name__
    return "object" if is_typeddict(hint) else hint.__name__


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the outer type of ``hint`` (the items are checked on their own)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is Annotated:
        base, (low, high) = typing.get_args(hint)
        return _matches(value, base) and low <= value <= high
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    if is_typeddict(hint):
        return isinstance(value, dict)
    return isinstance(value, origin or hint)


def check_shape(value: Any, hint: Any, where: str) -> None:
    """Raise :class:`RecordError` naming ``where`` and the field unless ``value`` has the shape of ``hint``."""
    if is_typeddict(hint):
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        hints = get_type_hints(hint, include_extras=True)
        for key, field_hint in hints.items():
            if typing.get_origin(field_hint) is NotRequired:
                (field_hint,) = typing.get_args(field_hint)
            if key not in value:
                if key in hint.__required_keys__:
                    raise RecordError(f"{where}: missing field '{key}'")
                continue
            item = value[key]
            if not _matches(item, field_hint):
                got = "a boolean" if isinstance(item, bool) else f"{item!r}"[:40] if isinstance(item, (int, float)) \
                    else type(item).__name__
                raise RecordError(f"{where}: field '{key}' must be {_name(field_hint)}, got {got}")
            inner = _inner(field_hint, item)
            if inner is not None:
                check_shape(item, inner, f"{where}.{key}" if ": " in where else f"{where}: {key}")
        return
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        for i, item in enumerate(value):
            if not _matches(item, item_hint):
                raise RecordError(f"{where}[{i}]: must be {_name(item_hint)}, got {type(item).__name__}")
            inner = _inner(item_hint, item)
            if inner is not None:
                check_shape(item, inner, f"{where}[{i}]")


def _inner(hint: Any, value: Any) -> Any:
    """The part of ``hint`` to check inside ``value``: a TypedDict or a list's items; else None."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for h in typing.get_args(hint):
            if h is not type(None) and _matches(value, h):
                return _inner(h, value)
        return None
    if is_typeddict(hint) or (origin is list and typing.get_args(hint)[0] is not Any):
        return hint
    return None
