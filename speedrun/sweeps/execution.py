"""Ray under a sweep: the cluster it runs on, and the Ray Tune experiments of its runs.

A local Ray starts in this process unless ``address`` names a cluster (``auto``, an address, or
``ray://`` through Ray's client); Ctrl-C never cuts Ray's start or stop half-way, so no Ray
process of ours is left behind. A trial holds one GPU (else ``cpus_per_run`` CPUs), actors are
reused so a compiled trainer serves the next seed, a dead worker's trial is retried
(``retries``), and every trial's logs land in the sweep's folder.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedrun.data.cifar10 import Cifar10
from speedrun.errors import SpeedrunError
from speedrun.settings import check, setting

TUNE_ENV = {
    "TUNE_DISABLE_SIGINT_HANDLER": "1",     # Ctrl-C stops the sweep, as anywhere else
    "RAY_AIR_NEW_OUTPUT": "0",              # the sweep prints its own table, not Tune's
    "TUNE_RESULT_BUFFER_LENGTH": "1",       # every epoch's report on time, for the live table
}
INSTALL_HINT = "speedrun sweep needs Ray Tune: pip install 'speedrun[sweep]' (or: pip install 'ray[tune,client]' optuna)"


def import_ray(address: str | None = None) -> Any:
    """Ray, with Tune importable; else one line saying how to install it.

    For a ``ray://`` address on a machine that holds a Ray token (``~/.ray/auth_token``, as a
    cluster with token authentication has), the client is told to send it: Ray does so for a
    local or ``auto`` address but not for its client, and reads the setting as it is imported."""
    if str(address).startswith("ray://") and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
        import ray.tune
    except ImportError:
        raise SpeedrunError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where the sweep's runs go and how hard a dying worker is retried."""

    address: str | None = setting(None, "join a running Ray cluster: auto, HOST:PORT, or ray://HOST:PORT through "
                                        "the client (default: start a local Ray here)")
    cpus_per_run: int = setting(1, "CPUs per run where the cluster has no GPU", low=1, high=4096, metavar="N")
    retries: int = setting(1, "times a run whose worker died is tried again before it is recorded failed", low=0,
                           high=100, metavar="N")
    num_cpus: int | None = setting(None, "CPUs a local Ray offers (default: all)", low=1, high=65_536, metavar="N")
    object_store_mb: int | None = setting(None, "a local Ray's object store size (default: Ray's)", low=64,
                                          high=10**7, metavar="MB")
    max_workers: int | None = setting(None, "run at most N runs at once (default: one per GPU, or per --cpus-per-run "
                                            "CPUs)", low=1, high=65_536, metavar="N")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Cluster:
    """What the sweep runs on: GPUs (one run each) or CPUs (``size`` runs side by side)."""

    gpus: int
    size: int

    @property
    def concurrent_times(self) -> bool:
        """Whether runs share the machine's CPUs with each other: on CPUs, when more than one runs at a time."""
        return self.gpus == 0 and self.size > 1


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and SIGTERM) until the block is done, then raise KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def ray_cluster(options: RayOptions) -> Iterator[Cluster]:
    """Ray started (or joined) for the block, and stopped after it when this process started it."""
    ray = import_ray()
    started = False
    try:
        if not ray.is_initialized():
            with signals_deferred():
                started = True
                _start(ray, options)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        size = gpus or max(1, int(resources.get("CPU", 1)) // options.cpus_per_run)
        yield Cluster(gpus, min(size, options.max_workers or size))
    finally:
        if started:
            with signals_deferred():
                ray.shutdown()


def _start(ray: Any, options: RayOptions) -> None:
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "error"}
    if options.address is not None:
        kwargs["address"] = options.address
    if str(options.address).startswith("ray://"):
        # Through the client, Tune's driver loop runs on the cluster's head: its lines come back as logs.
        # (No runtime_env for Tune's settings there: under load, Ray's client server then failed to start.)
        kwargs["log_to_driver"] = True
    else:
        kwargs.update(include_dashboard=False, configure_logging=True)
        if options.num_cpus is not None:
            kwargs["num_cpus"] = options.num_cpus
        if options.object_store_mb is not None:
            kwargs["object_store_memory"] = options.object_store_mb * 1024 * 1024
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray"
        raise SpeedrunError(f"--address: could not start or join {where} ({' '.join(str(e).split())[:200]})") from None


def run_experiment(name: str, folder: Path, jobs: Mapping[str, dict], datasets: Mapping[str, Cifar10], cluster: Cluster,
                   options: RayOptions, command: Sequence[str], callbacks: Sequence[Any], *,
                   search: Any = None, scheduler: Any = None, samples: int = 1, grid: Sequence[str] = ()) -> None:
    """One Tune experiment under ``folder/logs/NAME``: a trial per ``grid`` job, or ``samples`` trials
    that ``search`` asks for. Outcomes reach the sweep through ``callbacks``."""
    from ray import tune

    from speedrun.sweeps.trial import run_trial

    os.environ.update(TUNE_ENV)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    resources: dict[str, float] = {"gpu": 1, "cpu": 1} if cluster.gpus else {"cpu": options.cpus_per_run}
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, jobs=dict(jobs), datasets=dict(datasets), command=list(command),
                             threads=None if cluster.gpus else options.cpus_per_run),
        resources)
    param_space = {"run": tune.grid_search(list(grid))} if grid else {"run": next(iter(jobs))}
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=samples,
                                    max_concurrent_trials=cluster.size, reuse_actors=True,
                                    trial_dirname_creator=_trial_folder, trial_name_creator=_trial_folder),
        run_config=tune.RunConfig(name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str((folder / "logs").resolve()),
                                  failure_config=tune.FailureConfig(max_failures=options.retries),
                                  callbacks=list(callbacks), verbose=0, log_to_file=True,
                                  sync_config=tune.SyncConfig(sync_artifacts=True)))     # the stdout and stderr files
    tuner.fit()


def _trial_folder(trial: Any) -> str:
    run = str(trial.config.get("run", "run")).replace("/", "_").replace(":", "_")
    return f"{run}_{trial.trial_id}" if run.startswith("tune_") else run
