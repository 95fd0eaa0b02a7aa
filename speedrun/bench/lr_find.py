"""``speedrun lr-find`` as a library call: run the range test, print it, keep the evidence.

The curve is written as CSV (``lr,loss,smoothed``) and, with matplotlib, as a PNG, beside a JSON
record of kind ``"lr_find"`` in the usual record schema (no benchmark runs; the curve and the
suggestions under ``lr_find``, the lr ramp under ``schedule`` so ``speedrun plot`` can draw it).
Nothing is overwritten: an existing file is an error before the test runs.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from speedrun.bench.harness import HarnessOptions, record_path
from speedrun.data.cifar10 import Cifar10
from speedrun.data.device_data import DeviceData
from speedrun.data.loading import load_cifar10
from speedrun.errors import SpeedrunError
from speedrun.instruments.environment import describe_environment, pick_device
from speedrun.instruments.telemetry import NvmlSampler
from speedrun.instruments.timing import ProgressLog
from speedrun.outputs import (
    check_output,
    matplotlib_available,
    publish,
    write_csv,
    write_figure,
)
from speedrun.recipes import Recipe
from speedrun.results.records import SCHEMA_NAME, SCHEMA_VERSION, record_text, utc_now
from speedrun.training.cuda_graph import check_cuda_graph_device
from speedrun.training.range_test import (
    LRFinderConfig,
    LRFinderResult,
    divergence_warning,
    lr_ramp,
    recipe_range_test,
)

LR_FIND_TIMER_RULE = "not timed: an LR range test measures loss against learning rate, not time"
CURVE_HEADER = ("lr", "loss", "smoothed")


def run_lr_find(recipe: Recipe, options: HarnessOptions, config: LRFinderConfig | None = None, *,
                data: Cifar10 | None = None, log: Callable[[str], None] = print,
                command: Sequence[str] | None = None) -> dict:
    """Run the range test for ``recipe`` on the data and device of ``options``; return the record
    (written with its CSV and PNG unless ``options.out`` is None)."""
    config = config or LRFinderConfig()
    paths = _output_paths(options.out, recipe.name, force=options.force)
    result, data, device = _range_test(recipe, options, config, data, log)
    log(format_result(result, config))
    record = lr_find_record(recipe, options, config, result, data=data, device=str(device),
                            driver=NvmlSampler(device).driver_version() if device.type == "cuda" else None,
                            command=command)
    if paths is None:
        return record
    json_path, csv_path, png_path = paths
    record["lr_find"]["files"] = {"csv": csv_path.name, "png": png_path.name if png_path else None}
    write_csv(csv_path, CURVE_HEADER, zip(result.lrs, result.losses, result.smoothed), replace=options.force)
    log(f"curve: {csv_path}")
    if png_path is not None:
        write_figure(png_path, lambda fig: draw_lr_find(fig, result, title=f"LR range test: {recipe.name}"),
                     replace=options.force)
        log(f"plot: {png_path}")
    text = record_text(record)
    publish(json_path, lambda f: f.write(text), binary=False, replace=options.force)
    log(f"record: {json_path}")
    record["_path"] = str(json_path)
    return record


def _range_test(recipe: Recipe, options: HarnessOptions, config: LRFinderConfig, data: Cifar10 | None,
                log: Callable[[str], None]) -> tuple[LRFinderResult, Cifar10, torch.device]:
    """The range test of ``recipe`` on the run's data (``data``, or loaded per ``options``) and device."""
    device = pick_device(options.device)
    check_cuda_graph_device(recipe.train.cuda_graph, device)
    if data is None:
        data = load_cifar10(options.data_dir, download=options.download)
    data = data.subset(options.train_subset, options.test_subset)
    log(f"LR range test: {recipe.name}, {config.num_steps} steps of batch {recipe.train.batch_size}, "
        f"lr {config.start_lr:g} -> {config.end_lr:g} ({config.ramp}) on {device}")
    result = recipe_range_test(recipe, DeviceData.from_cifar(data, device), seed=options.seed, config=config,
                               progress=ProgressLog(log) if device.type == "cpu" else None)
    return result, data, device


def resolve_auto_max_lr(recipe: Recipe, options: HarnessOptions, data: Cifar10 | None = None, *,
                        config: LRFinderConfig | None = None, log: Callable[[str], None] = print) -> float:
    """``--max-lr auto``: the range test's one-cycle ``max_lr`` for ``recipe`` on the run's data and
    device. SpeedrunError when the curve gives no suggestion."""
    config = config or LRFinderConfig()
    result, _, _ = _range_test(recipe, options, config, data, log)
    max_lr = result.suggestions["one_cycle_max_lr"]
    if max_lr is None:
        raise SpeedrunError(f"--max-lr auto: the LR range test from {config.start_lr:g} to {config.end_lr:g} "
                            "found no falling loss; pass --max-lr as a number, or run `speedrun lr-find` with a "
                            "lower --start-lr")
    s = result.suggestions
    stopped = ", stopped at divergence" if result.stopped_early else ""
    log(f"--max-lr auto: LR range test ({len(result.lrs)} steps{stopped}) suggests max_lr {max_lr:.4g} "
        f"(steepest {s['steepest_lr']:.4g}, min/10 {s['min_div_10_lr']:.4g})")
    return max_lr


def _output_paths(out: str | None, recipe: str, *, force: bool) -> tuple[Path, Path, Path | None] | None:
    """Record, CSV and (with matplotlib) PNG paths, checked to be new (or ``force``) before anything runs."""
    if not out:
        return None
    if not str(out).lower().endswith(".json"):
        check_output(out, flag="--out", folder=True)
    json_path = check_output(record_path(out, recipe, kind="lr_find"), force=force, flag="--out")
    csv_path = check_output(json_path.with_suffix(".csv"), force=force, flag="--out")
    png_path = None
    if matplotlib_available():
        png_path = check_output(json_path.with_suffix(".png"), force=force, flag="--out")
    return json_path, csv_path, png_path


def format_result(result: LRFinderResult, config: LRFinderConfig) -> str:
    """Plain-words summary: how far the test went, what it suggests, and a warning when the loss
    never diverged (the minimum is then only the end of the range)."""
    end = "stopped early (loss diverged)" if result.stopped_early else "ran all steps"
    if not result.lrs:
        return "no finite loss recorded: lower --start-lr"
    warning = divergence_warning(result, config)
    lines = [f"{len(result.lrs)} steps up to lr {result.lrs[-1]:.4g}; {end}", *([warning] if warning else [])]
    s = result.suggestions
    if s["one_cycle_max_lr"] is None:
        lines.append("no suggestion: the smoothed loss never fell; lower --start-lr or raise --num-steps")
        return "\n".join(lines)
    lines += [
        f"steepest descent at lr {s['steepest_lr']:.4g}; valley at lr {s['valley_lr']:.4g}; "
        f"minimum at lr {s['min_loss_lr']:.4g} (/10: {s['min_div_10_lr']:.4g})",
        f"one-cycle: max_lr {s['one_cycle_max_lr']:.4g} (lower bound {s['one_cycle_base_lr']:.4g})",
        f"cyclical:  base_lr {s['cyclic_base_lr']:.4g}  max_lr {s['cyclic_max_lr']:.4g}",
    ]
    return "\n".join(lines)


def lr_find_record(recipe: Recipe, options: HarnessOptions, config: LRFinderConfig, result: LRFinderResult, *,
                   data: Cifar10, device: str, driver: str | None = None,
                   command: Sequence[str] | None = None) -> dict:
    """A schema-valid record of kind ``lr_find``: no runs, the curve and suggestions under ``lr_find``."""
    ramp = lr_ramp(config).tolist()
    steps_per_epoch = len(data.train_labels) // recipe.train.batch_size
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "kind": "lr_find",
        "created": utc_now(),
        "command": list(command) if command is not None else list(sys.argv),
        "recipe": recipe.name,
        "target": recipe.target_for(data.source, options.target).target,
        "target_source": recipe.target_for(data.source, options.target).source,
        "config": {"recipe": recipe.to_dict(), "harness": dataclasses.asdict(options),
                   "lr_find": dataclasses.asdict(config), "compile": False, "device": device},
        "dataset": {"name": data.source, "origin": str(data.origin), "train_size": len(data.train_labels),
                    "test_size": len(data.test_labels)},
        "environment": describe_environment(torch.device(device), driver),
        "timer_rule": LR_FIND_TIMER_RULE,
        "schedule": {"name": "lr_range_test", "params": {"start_lr": config.start_lr, "end_lr": config.end_lr,
                                                          "ramp": config.ramp, "num_steps": config.num_steps},
                     "interval": "step", "steps": len(ramp), "steps_per_epoch": steps_per_epoch,
                     "lr": ramp, "momentum": None},
        "runs": [],
        "runs_planned": 0,
        "complete": True,
        "summary": {"runs": 0, "completed": 0, "failed": 0, "reached": 0},
        "lr_find": _finite({**result.to_dict(), "diverged": result.stopped_early,
                            "warning": divergence_warning(result, config)}),
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers (none are expected) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def draw_lr_find(fig: Any, result: LRFinderResult, title: str = "LR range test") -> None:
    """Loss (faint) and smoothed loss against lr on a log axis, with the suggestions marked."""
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
    ax.set_xscale("log")
    if result.lrs:
        ax.set_xlim(min(result.lrs), max(result.lrs))          # the range measured, not the range asked for
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    if result.smoothed:
        low, first = min(min(result.smoothed), min(result.losses)), result.smoothed[0]
        ax.set_ylim(low - 0.05 * abs(low), max(first, low) * 1.25 + 1e-12)   # divergence would flatten the rest
    s = result.suggestions
    marks = (("steepest_lr", "steepest", "tab:green"), ("valley_lr", "valley", "tab:orange"), ("min_loss_lr", "minimum", "tab:red"),
             ("one_cycle_max_lr", "one-cycle max_lr", "black"), ("cyclic_base_lr", "cyclical base_lr", "tab:purple"))
    for key, label, colour in marks:
        if s.get(key) is not None:
            ax.axvline(s[key], color=colour, linestyle="--", linewidth=1, label=f"{label} {s[key]:.3g}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{title}{' (stopped at divergence)' if result.stopped_early else ' (never diverged: raise --end-lr)'}",
                 fontsize=10)

