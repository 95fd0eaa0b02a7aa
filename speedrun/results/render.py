"""The leaderboard rendered: an aligned terminal table, Markdown for the README, CSV and JSON with raw numbers."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence

from speedrun.errors import SpeedrunError
from speedrun.results.leaderboard import (
    CSV_FIELDS,
    FORMATS,
    LeaderboardEntry,
    LeaderboardGroup,
)

# (heading, right-aligned, cell): the table's columns; a sweep's variant and grid cell only when some entry has one.
_Column = tuple[str, bool, Callable[[LeaderboardEntry], str]]
_COLUMNS: tuple[_Column, ...] = (
    ("#", True, lambda e: str(e.rank) if e.rank is not None else "-"),
    ("recipe", False, lambda e: e.recipe),
    ("schedule", False, lambda e: e.schedule),
    ("GPU", False, lambda e: e.gpu),
    ("runs", True, lambda e: str(e.runs)),
    ("accuracy", True, lambda e: _pm(e.accuracy.mean, e.accuracy_ci95_half, _pct, lambda h: f"{100 * h:.2f}")),
    ("reached", True, lambda e: f"{e.reached}/{e.runs}" if e.runs else "-"),
    ("time-to-target", True, lambda e: _pm(e.time_to_target.mean, e.time_ci95_half, _secs, _secs_bare)),
    ("GPU util", True, lambda e: f"{e.gpu_util_mean:.0f}%" if e.gpu_util_mean is not None else "-"),
    ("dataset", False, lambda e: e.dataset),
    ("date", False, lambda e: e.date),
    ("commit", False, lambda e: e.commit),
)
_SWEEP_COLUMNS: tuple[_Column, ...] = (
    ("variant", False, lambda e: e.variant or "-"),
    ("grid", False, lambda e: e.grid or "-"),
)


def _columns(entries: Sequence[LeaderboardEntry]) -> list[_Column]:
    sweep = [c for c in _SWEEP_COLUMNS if any(c[2](e) != "-" for e in entries)]
    notes = [("note", False, lambda e: e.remarks)] if any(e.remarks for e in entries) else []
    return [_COLUMNS[0], *sweep, *_COLUMNS[1:], *notes]


def render(groups: Sequence[LeaderboardGroup], fmt: str) -> str:
    """Render in one of :data:`FORMATS`; an unknown format names the valid ones."""
    if fmt == "table":
        return render_table(groups)
    if fmt == "markdown":
        return render_markdown(groups)
    if fmt == "csv":
        return render_csv(groups)
    if fmt == "json":
        return render_json(groups)
    raise SpeedrunError(f"unknown leaderboard format {fmt!r}; use one of {', '.join(FORMATS)}")


def render_table(groups: Sequence[LeaderboardGroup]) -> str:
    """Aligned plain-text tables for the terminal, one per group, unranked rows last with reasons."""
    blocks = []
    for group in groups:
        columns = _columns(group.entries)
        header = [c[0] for c in columns]
        rows = [[c[2](e) for c in columns] for e in group.entries]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def line(cells: list[str], widths: list[int] = widths, columns: list[_Column] = columns) -> str:
            parts = [c.rjust(w) if col[1] else c.ljust(w) for c, w, col in zip(cells, widths, columns)]
            return "  ".join(parts).rstrip()

        text = [group.title, line(header), "  ".join("-" * w for w in widths)]
        text += [line(r) for r in rows]
        blocks.append("\n".join(text))
    return "\n\n".join(blocks) + "\n"


def render_markdown(groups: Sequence[LeaderboardGroup]) -> str:
    """GitHub-flavoured Markdown: a heading and a table per group, ready for the README."""
    blocks = []
    for group in groups:
        columns = _columns(group.entries)
        align = ["---:" if c[1] else "---" for c in columns]
        lines = [f"### {_md_escape(group.title)}", "", _md_row([c[0] for c in columns]), "|" + "|".join(align) + "|"]
        lines += [_md_row([c[2](e) for c in columns]) for e in group.entries]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_escape(c) for c in cells) + " |"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_csv(groups: Sequence[LeaderboardGroup]) -> str:
    """One flat CSV row per entry with raw numbers (fractions, seconds); rank empty if unranked."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for group in groups:
        for entry in group.entries:
            writer.writerow({k: "" if v is None else v for k, v in entry.to_dict().items()})
    return buf.getvalue()


def render_json(groups: Sequence[LeaderboardGroup]) -> str:
    """Groups with their entries as JSON: raw numbers, nulls where unknown."""
    doc = {
        "groups": [
            {
                "gpu": g.gpu,
                "dataset": g.dataset,
                "target": g.target,
                "ranked": [e.to_dict() for e in g.ranked],
                "unranked": [e.to_dict() for e in g.unranked],
            }
            for g in groups
        ]
    }
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"




def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _secs(x: float) -> str:
    return f"{_secs_bare(x)} s"


def _secs_bare(x: float) -> str:
    return f"{x:.2f}" if abs(x) < 100 else f"{x:.1f}"


def _pm(mean: float | None, half: float | None, fmt_mean: Callable[[float], str], fmt_half: Callable[[float], str]) -> str:
    if mean is None:
        return "-"
    return fmt_mean(mean) if half is None else f"{fmt_mean(mean)} ± {fmt_half(half)}"
