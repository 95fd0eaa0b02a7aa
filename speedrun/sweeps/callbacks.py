"""What the sweep's driver hears from Ray Tune, and what it shows a person while runs go on.

:class:`Progress` turns each trial's end into one :class:`Landed` (a record, the run's own error,
an early stop, or a worker that died more often than it may), says when a dead worker's run is
tried again, and every few seconds prints a table of what is running (variant, grid cell, seed,
epoch, accuracy, elapsed) under done / running / failed / left and the time left: the finished
runs' mean duration, or the running ones' pace until one finishes.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback

from speedrun.outputs import format_duration
from speedrun.sweeps.trial import ERROR_KEY, RECORD_KEY, searched_value


@dataclass(frozen=True)
class Landed:
    """A trial's end: ``record`` when the run finished (ok or diverged), else ``status`` says why not."""

    key: str                      # the job: a run id, or ``tune:LABEL`` for a tuning trial
    status: str                   # ok, diverged, failed, stopped (early, by the scheduler)
    attempts: int
    params: dict = field(default_factory=dict)
    record: dict | None = None
    error: str | None = None
    accuracy: float | None = None


class Progress(Callback):
    """Hands each finished trial to ``land`` once, logs retries, prints the live table every ``every_s`` s."""

    def __init__(self, land: Callable[[Landed], None], log: Callable[[str], None], *, total: int, workers: int,
                 every_s: float, labels: Mapping[str, tuple[str, str, str]], search: Mapping[str, Any] = {}):
        self.land, self.log, self.total, self.workers, self.every_s = land, log, total, workers, every_s
        self.labels, self.search = labels, dict(search)      # job key -> (variant, grid cell, seed); searched flags
        self.start = self._last = time.monotonic()
        self.done = self.failed = 0
        self.durations: list[float] = []
        self.running: dict[str, dict] = {}     # trial id -> its row
        self._landed: set[str] = set()

    def _finish(self, trial: Any, attempts: int | None = None, **outcome: Any) -> None:
        if trial.trial_id in self._landed:
            return
        self._landed.add(trial.trial_id)
        params = {name: searched_value(trial.config[name]) for name in self.search.get(trial.config["run"], ())}
        self.land(Landed(trial.config["run"], attempts=attempts or trial.num_failures + 1, params=params, **outcome))
        row = self.running.pop(trial.trial_id, None)
        if row is not None:
            self.done += 1
            self.failed += outcome["status"] == "failed"
            self.durations.append(time.monotonic() - row["start"])

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.setdefault(trial.trial_id, {"key": trial.config["run"], "start": time.monotonic(), "epoch": 0})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if RECORD_KEY in result:
            record = json.loads(result[RECORD_KEY])
            record["sweep"]["attempts"] = trial.num_failures + 1
            run = record["runs"][0]
            self._finish(trial, status=run["status"], record=record, accuracy=run.get("final_test_acc"))
        elif ERROR_KEY in result:
            self._finish(trial, status="failed", error=str(result[ERROR_KEY]))
        elif trial.trial_id in self.running and "epochs" in result:
            self.running[trial.trial_id].update(epoch=result["epoch"], epochs=result["epochs"],
                                                accuracy=result.get("accuracy"))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}           # ended without its record: stopped early by the scheduler
        self._finish(trial, status="stopped", accuracy=last.get("accuracy"),
                     error=f"stopped early at epoch {last.get('epoch')}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, attempts=trial.num_failures, status="failed",
                     error=f"failed {trial.num_failures} time(s): {_error_text(trial.get_error())}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.pop(trial.trial_id, None)
        self.log(f"  {_name(trial.config['run'])}: failed ({_error_text(trial.get_error())}); "
                 f"trying again, attempt {trial.num_failures + 1}")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self.log(self.text())

    def per_run_s(self) -> float | None:
        """A run's expected duration: the finished ones' mean, else the running ones' pace."""
        if self.durations:
            return sum(self.durations) / len(self.durations)
        now = time.monotonic()
        paces = [(now - r["start"]) * r["epochs"] / r["epoch"] for r in self.running.values() if r.get("epoch")]
        return sum(paces) / len(paces) if paces else None

    def status_line(self) -> str:
        now, per_run = time.monotonic(), self.per_run_s()
        left = self.total - self.done - len(self.running)
        line = (f"sweep: {self.done - self.failed} done, {len(self.running)} running, {self.failed} failed, "
                f"{left} left, {format_duration(now - self.start)} elapsed")
        if per_run is not None and (left or self.running):
            work = left * per_run + sum(max(0.0, per_run - (now - r["start"])) for r in self.running.values())
            line += f", about {format_duration(work / self.workers)} left"
        return line

    def text(self) -> str:
        """The status line, and a row per running trial under a header."""
        now = time.monotonic()
        rows = [("variant", "grid", "seed", "epoch", "accuracy", "elapsed")]
        for r in self.running.values():
            variant, cell, seed = self.labels.get(r["key"], (_name(r["key"]), "", ""))
            acc = r.get("accuracy")
            rows.append((variant, cell or "-", seed or "-", f"{r['epoch']}/{r['epochs']}" if r.get("epochs") else "-",
                         "-" if acc is None else f"{acc:.4f}", format_duration(now - r["start"])))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        table = ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        return "\n".join([self.status_line(), *table] if len(rows) > 1 else [self.status_line()])


def _name(key: str) -> str:
    return key.removeprefix("tune:") + (" (tuning)" if key.startswith("tune:") else "")


def _error_text(error: BaseException | None) -> str:
    """The line of Ray's long error text that says what happened (the last ``...Error: ...``)."""
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Failure #", "Traceback", "File ", "^", "During handling"))]
    said = [line for line in lines if "Error" in line.split(":")[0] or "died" in line]
    return (said or lines or ["unknown error"])[-1][:200]

