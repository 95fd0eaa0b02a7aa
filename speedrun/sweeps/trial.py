"""What a Ray Tune trial runs: one ``speedrun train`` run, reported epoch by epoch.

Epoch reports feed the live table, TensorBoard and early stopping; the last carries the run's
record as JSON text for the driver to keep. The prepared trainer stays in the process for the
next trial of the same flags (Tune reuses the actor), so a variant's seeds compile once per
worker. An error the run raises is reported as its outcome; only a dead worker is retried.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from speedrun.data.cifar10 import Cifar10
from speedrun.sweeps.plan import flag_words

RECORD_KEY = "record_json"     # the last report's record, as text (the loggers leave text out of their curves)
ERROR_KEY = "error"

_kept: dict[str, Any] = {}      # this process's prepared trainer: {"flags", "settings", "prepared", "rehearsal_s"}


def run_trial(config: dict, *, jobs: dict[str, dict], datasets: dict[str, Cifar10], command: Sequence[str],
              threads: int | None) -> None:
    """Train the job ``config["run"]`` names (its searched values, if tuned, in ``config``) and report it to Tune."""
    from ray import tune

    if threads:
        import torch

        torch.set_num_threads(threads)
    job = jobs[config["run"]]
    params = {name: searched_value(config[name]) for name in job.get("search", ())}
    flags = [*job["flags"], *flag_words(params)]
    sweep = {**job["sweep"], **({"params": params} if params else {})}
    try:
        record = _train(flags, int(job["seed"]), sweep, datasets[job["data"]], command, tune.report)
    except Exception as error:        # the run's own error: reported, not retried
        tune.report({ERROR_KEY: f"{type(error).__name__}: {' '.join(str(error).split())}"[:300],
                     "traceback": traceback.format_exc()[-4000:]})
        return
    run = record["runs"][0]
    final = {"epoch": len(run["epochs"]), RECORD_KEY: json.dumps(record), "status": run["status"]}
    if run.get("final_test_acc") is not None and run["status"] == "ok":
        final["accuracy"] = run["final_test_acc"]
    tune.report(final)


def searched_value(value: Any) -> Any:
    """A sampled value as the run uses and the record shows it: floats to 4 significant digits."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def _train(flags: list[str], seed: int, sweep: dict, data: Cifar10, command: Sequence[str], report) -> dict:
    from speedrun.bench.harness import EPOCH_HEADER, format_epoch, prepare_run, rehearse, train_record
    from speedrun.overrides import settings_from_flags

    def quiet(_line: str) -> None:
        pass

    reused = _kept.get("flags") == flags
    prepare_s = 0.0
    if not reused:
        _kept.clear()                  # free the last variant's trainer before building the next
        started = time.perf_counter()
        settings = settings_from_flags([*flags, "--runs", "1", "--no-record"], data=data, log=quiet)
        with warnings.catch_warnings():
            # The object store's arrays are read-only; the device copy is made from them.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            prepared = prepare_run(settings.recipe, settings.options, data=data, log=quiet)
        rehearsal_s = rehearse(prepared, quiet)
        prepare_s = time.perf_counter() - started
        _kept.update(flags=flags, settings=settings, prepared=prepared, rehearsal_s=rehearsal_s)
    settings, prepared = _kept["settings"], _kept["prepared"]
    options = dataclasses.replace(settings.options, seed=seed)

    # The run's own log (Tune keeps this process's output in the run's folder under DIR/logs).
    print(f"speedrun train {' '.join(flags)} --seed {seed}" + (" (trainer kept from the last run)" if reused else ""))
    print(EPOCH_HEADER, flush=True)

    def epoch_done(entry) -> None:
        print(format_epoch(entry), flush=True)
        metrics = {"epoch": entry.epoch, "train_loss": entry.train_loss, "lr": entry.lr, "run_s": entry.elapsed_s,
                   "epochs": prepared.trainer.last_epoch}
        if entry.test_acc is not None:
            metrics["accuracy"] = entry.test_acc
        report({k: v for k, v in metrics.items() if v is not None})

    result = prepared.trainer.run(seed, prepared.lr, prepared.momentum, target=prepared.target, log=epoch_done)
    print(f"{result.status}" + (f": {result.error}" if result.error else ""), flush=True)
    record = train_record(settings.recipe, options, prepared, _kept["rehearsal_s"], [result], command)
    record["sweep"] = {**sweep, "flags": flags, "worker": {"host": socket.gethostname(), "pid": os.getpid()},
                       "trainer_reused": reused, "prepare_s": round(prepare_s, 3)}
    return record
