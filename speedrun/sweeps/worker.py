"""The process that trains a sweep's runs: one per GPU (or per few CPUs), one run at a time.

A worker lives for the whole sweep and keeps the last arm's prepared trainer (data on the
device, model compiled, rehearsed), so the seeds of one variant, which the sweep hands out
together, pay for compilation once per worker, as ``speedrun train --runs N`` does. The dataset
comes from Ray's object store, put there once by the driver: each node holds one copy, read
without copying by every worker on it, never re-read per run.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from speedrun.data.cifar10 import Cifar10

if TYPE_CHECKING:
    from speedrun.bench.harness import PreparedRun
    from speedrun.overrides import TrainSettings


class RunWorker:
    """Trains one run per :meth:`run` call and returns its record (a one-run train record)."""

    def __init__(self, data_keys: Sequence[str], *datasets: Cifar10, threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.data = dict(zip(data_keys, datasets, strict=True))
        self._key: tuple[str, ...] | None = None
        self._prepared: PreparedRun | None = None
        self._settings: TrainSettings | None = None
        self._rehearsal_s = 0.0

    def where(self) -> dict:
        """The worker's host, process id and the device it trains on."""
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu = torch.cuda.get_device_name() if device == "cuda" else None
        return {"host": socket.gethostname(), "pid": os.getpid(), "device": device, "gpu": gpu}

    def run(self, flags: Sequence[str], seed: int, data_key: str, command: Sequence[str],
            sweep: dict) -> dict:
        """Train ``speedrun train <flags>`` with ``seed``; return its record (``sweep`` added)."""
        from speedrun.bench.harness import prepare_run, rehearse, train_record
        from speedrun.overrides import settings_from_flags

        def quiet(_line: str) -> None:
            pass

        data = self.data[data_key]
        key = tuple(flags)
        if key != self._key or self._settings is None:     # an arm's flags are read once per worker
            self._settings = settings_from_flags([*flags, "--runs", "1", "--no-record"], data=data, log=quiet)
        settings = dataclasses.replace(self._settings, options=dataclasses.replace(self._settings.options, seed=seed))
        prepared = self._prepared
        if prepared is None or key != self._key:
            self._prepared = prepared = None     # free the last arm's trainer before building the next
            with warnings.catch_warnings():
                # The object store's arrays are read-only; the device copy is made from them.
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                prepared = prepare_run(settings.recipe, settings.options, data=data, log=quiet)
            self._rehearsal_s = rehearse(prepared, quiet)
            self._prepared, self._key = prepared, key
        result = prepared.trainer.run(seed, prepared.lr, prepared.momentum, target=prepared.target)
        record = train_record(settings.recipe, settings.options, prepared, self._rehearsal_s, [result], command)
        record["sweep"] = {**sweep, "worker": self.where(), "flags": list(flags)}
        return record
