"""What a finished sweep says: its leaderboard, each variant against the baseline, what won tuning.

The numbers come from the variant records the sweep wrote, through the same leaderboard and
compare code as ``speedrun leaderboard`` and ``speedrun compare``, so the summary says nothing
those commands would not.
"""
from __future__ import annotations

from pathlib import Path

from speedrun.results.compare import compare_records
from speedrun.results.leaderboard import build_leaderboard, load_records
from speedrun.results.records import read_record
from speedrun.results.render import render
from speedrun.sweeps.plan import flag_words
from speedrun.sweeps.spec import SweepSpec
from speedrun.sweeps.sweep import RUNS_TABLE, TRIALS_TABLE, SweepReport


def variant_records(report: SweepReport) -> dict[str, list[dict]]:
    """Each variant's records, read back from the folder (with their paths as ``source_file``)."""
    return {label: [{**read_record(p), "source_file": str(p)} for p in paths]
            for label, paths in report.records.items()}


def leaderboard_text(report: SweepReport, fmt: str = "table") -> str:
    """The leaderboard over the sweep's folder, as ``speedrun leaderboard DIR`` gives it."""
    records = load_records([report.folder])[0] if report.folder.is_dir() else []
    return render(build_leaderboard(records), fmt) if records else "no variant has a record yet\n"


def comparisons(spec: SweepSpec, report: SweepReport) -> list[tuple[str, str]]:
    """(variant, compare's text) for every variant against the spec's baseline at the same grid
    point (labels are ``variant@point``), record by record."""
    if spec.baseline is None:
        return []
    records = variant_records(report)
    out = []
    for label, rs in records.items():
        variant, at, point = label.partition("@")
        if variant == spec.baseline:
            continue
        base = records.get(spec.baseline + at + point)
        if not base:
            continue
        for record in rs:
            out.append((label, compare_records(base[0], record).to_text()))
    return out


def summary_markdown(spec: SweepSpec, report: SweepReport) -> str:
    lines = [f"# Sweep {spec.name}", "",
             f"- spec: `{spec.source}`; seeds {', '.join(map(str, spec.seeds))}",
             f"- this start: {report.trained} run(s) trained, {report.ran - report.trained} failed, "
             f"{report.skipped} already done and skipped" + (f", {report.trials_ran} tuning trial(s)" if report.trials_ran
                                                            else "") + f"; {report.elapsed_s:.0f} s",
             f"- every run: `{RUNS_TABLE}` (variant, grid values, seed, status, accuracy, time, attempts)"
             + (f"; every tuning trial: `{TRIALS_TABLE}`" if spec.tune else "")
             + "; Ray Tune's logs and TensorBoard curves: `logs/` (`tensorboard --logdir logs`)",
             ]
    if report.concurrent_times:
        lines.append("- **ran on CPUs side by side:** the times measure the sharing as much as the "
                     "recipes; they rank nothing (the accuracies stand)")
    if report.tuned:
        assert spec.tune is not None
        early = ", early stopping (ASHA)" if spec.tune.early_stop else ""
        lines += ["", f"## Tuning: {spec.tune.trials} trial(s) per variant ({spec.tune.sampler}{early}, "
                      f"training seed {spec.tune.seed}, never a reported seed)", "",
                  "| variant | trials | finished | stopped early | best accuracy | winning flags |",
                  "|---|---|---|---|---|---|"]
        for label, result in report.tuned.items():
            finished = sum(1 for t in result.trials if t.status == "ok")
            stopped = sum(1 for t in result.trials if t.status == "stopped")
            best = result.best
            lines.append(f"| {label} | {len(result.trials)} | {finished} | {stopped} | "
                         + ("- | none finished |" if best is None else
                            f"{best.value:.4f} | `{' '.join(flag_words(best.params))}` |"))
    if report.failed:
        lines += ["", "## Failed", ""] + [f"- {key}: {error}" for key, error in report.failed.items()]
    lines += ["", "## Leaderboard", "", leaderboard_text(report, "markdown").rstrip()]
    compared = comparisons(spec, report)
    if compared:
        lines += ["", f"## Against the baseline ({spec.baseline})", ""]
        for label, text in compared:
            lines += [f"### {label}", "", "```", text.rstrip(), "```", ""]
    records = [f"- `{Path(p).name}`" for paths in report.records.values() for p in paths]
    lines += ["", "## Records", "", *records]
    return "\n".join(lines).rstrip() + "\n"
