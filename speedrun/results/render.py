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

_NUMERIC_COLUMNS = frozenset({0, 4, 5, 6, 7, 8})
_COLUMNS = ("#", "recipe", "schedule", "GPU", "runs", "accuracy", "reached", "time-to-target", "GPU util", "dataset", "date", "commit")


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


def _cells(entry: LeaderboardEntry) -> list[str]:
    return [
        str(entry.rank) if entry.rank is not None else "-",
        entry.recipe,
        entry.schedule,
        entry.gpu,
        str(entry.runs),
        _pm(entry.accuracy.mean, entry.accuracy_ci95_half, _pct, lambda h: f"{100 * h:.2f}"),
        f"{entry.reached}/{entry.runs}" if entry.runs else "-",
        _pm(entry.time_to_target.mean, entry.time_ci95_half, _secs, _secs_bare),
        f"{entry.gpu_util_mean:.0f}%" if entry.gpu_util_mean is not None else "-",
        entry.dataset,
        entry.date,
        entry.commit,
    ]


def render_table(groups: Sequence[LeaderboardGroup]) -> str:
    """Aligned plain-text tables for the terminal, one per group, unranked rows last with reasons."""
    blocks = []
    for group in groups:
        notes = any(e.remarks for e in group.entries)
        header = list(_COLUMNS) + (["note"] if notes else [])
        rows = [_cells(e) + ([e.remarks] if notes else []) for e in group.entries]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def line(cells: list[str], widths: list[int] = widths) -> str:
            parts = [c.rjust(w) if i in _NUMERIC_COLUMNS else c.ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))]
            return "  ".join(parts).rstrip()

        text = [group.title, line(header), "  ".join("-" * w for w in widths)]
        text += [line(r) for r in rows]
        blocks.append("\n".join(text))
    return "\n\n".join(blocks) + "\n"


def render_markdown(groups: Sequence[LeaderboardGroup]) -> str:
    """GitHub-flavoured Markdown: a heading and a table per group, ready for the README."""
    blocks = []
    for group in groups:
        notes = any(e.remarks for e in group.entries)
        header = list(_COLUMNS) + (["note"] if notes else [])
        align = ["---:" if i in _NUMERIC_COLUMNS else "---" for i in range(len(header))]
        lines = [f"### {_md_escape(group.title)}", "", _md_row(header), "|" + "|".join(align) + "|"]
        lines += [_md_row(_cells(e) + ([e.remarks] if notes else [])) for e in group.entries]
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
