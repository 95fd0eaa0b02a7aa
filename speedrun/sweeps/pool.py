"""Ray under a sweep: a pool of run workers, one per GPU, that survives a worker's death.

By default a local Ray starts inside this process (nothing to set up); ``address`` joins a
running cluster instead (``auto``, or ``ray://HOST:PORT``). With GPUs in the cluster each worker
holds one (``num_gpus=1``), so no two timed runs ever share a GPU; without them each worker takes
``cpus_per_run`` CPUs, and its times, taken beside the others', are marked as concurrent.

A worker that dies mid-run (killed, out of memory, its node gone) fails only that run: the pool
starts a new worker in its place and the run is tried again, up to ``retries`` times, and then
reported failed with the error. An error the run itself raises is reported at once: the same
flags would raise it again.
"""
from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from speedrun.data.cifar10 import Cifar10
from speedrun.errors import SpeedrunError
from speedrun.settings import check, setting

INSTALL_HINT = "speedrun sweep needs Ray: pip install 'speedrun[sweep]' (or: pip install ray optuna)"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SpeedrunError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where the sweep's runs go and how hard a dying worker is retried."""

    address: str | None = setting(None, "join a running Ray cluster: auto, or ray://HOST:PORT (default: start a "
                                        "local Ray here)")
    cpus_per_run: int = setting(1, "CPUs per run where the cluster has no GPU", low=1, high=4096, metavar="N")
    retries: int = setting(1, "times a run whose worker died is tried again before it is recorded failed", low=0,
                           high=100, metavar="N")
    num_cpus: int | None = setting(None, "CPUs a local Ray offers (default: all)", low=1, high=65_536, metavar="N")
    object_store_mb: int | None = setting(None, "a local Ray's object store size (default: Ray's)", low=64,
                                          high=10**7, metavar="MB")
    max_workers: int | None = setting(None, "use at most N workers (default: one per GPU, or per --cpus-per-run "
                                            "CPUs)", low=1, high=65_536, metavar="N")

    def __post_init__(self) -> None:
        check(self)


@dataclass
class Job:
    """One training run for the pool: the train flags, its seed, the dataset it reads."""

    key: str                      # the run's id (or a trial's)
    flags: tuple[str, ...]
    seed: int
    data_key: str
    sweep: dict = field(default_factory=dict)
    attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    job: Job
    record: dict | None            # None: no record (the error says why)
    error: str | None = None


@dataclass
class _Worker:
    handle: Any
    where: dict                           # its host and process id (RunWorker.where)
    job: Job | None = None
    future: Any = None
    last_flags: tuple[str, ...] | None = None   # what it compiled last: the same flags again cost nothing


class RunPool:
    """Hands jobs to idle workers and gives back each outcome as it arrives."""

    def __init__(self, options: RayOptions, *, command: Sequence[str],
                 on_start: Callable[[Job, dict], None] | None = None) -> None:
        self.ray = import_ray()
        self.options = options
        self.command = list(command)
        self.on_start = on_start
        self._started_ray = False
        if not self.ray.is_initialized():
            self._start_ray()
        resources = self.ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        size = self.gpus if self.gpus else max(1, cpus // options.cpus_per_run)
        if options.max_workers is not None:
            size = min(size, options.max_workers)
        self.size = size
        self.concurrent_times = self.gpus == 0
        self._keys: list[str] = []
        self._refs: list[Any] = []
        self._workers: list[_Worker] = []
        self.queue: deque[Job] = deque()

    def share(self, datasets: Mapping[str, Cifar10]) -> None:
        """Put the datasets the jobs read in the object store, once (before the first job)."""
        if self._workers:
            raise RuntimeError("share the datasets before the first job starts a worker")
        self._keys = list(datasets)
        self._refs = [self.ray.put(datasets[k]) for k in self._keys]

    def _start_ray(self) -> None:
        opts = self.options
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": True, "logging_level": "warning"}
        if opts.address is not None:
            kwargs = {"address": opts.address, "log_to_driver": False, "logging_level": "warning"}
        else:
            if opts.num_cpus is not None:
                kwargs["num_cpus"] = opts.num_cpus
            if opts.object_store_mb is not None:
                kwargs["object_store_memory"] = opts.object_store_mb * 1024 * 1024
        try:
            self.ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = f"the Ray cluster at {opts.address}" if opts.address else "a local Ray"
            raise SpeedrunError(f"--address: could not start or join {where} ({' '.join(str(e).split())[:200]})") from None
        self._started_ray = True

    @property
    def running(self) -> list[Job]:
        return [w.job for w in self._workers if w.job is not None]

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def _start_workers(self, count: int) -> None:
        """Start ``count`` workers at once (each imports torch and speedrun: they start side by side)."""
        from speedrun.sweeps.worker import RunWorker

        if self.gpus:
            actor = self.ray.remote(RunWorker).options(num_gpus=1, num_cpus=1, max_restarts=0)
            threads = None
        else:
            actor = self.ray.remote(RunWorker).options(num_cpus=self.options.cpus_per_run, max_restarts=0)
            threads = self.options.cpus_per_run
        handles = [actor.remote(self._keys, *self._refs, threads=threads) for _ in range(count)]
        places = self.ray.get([h.where.remote() for h in handles])
        self._workers += [_Worker(h, where) for h, where in zip(handles, places)]

    def _dispatch(self) -> None:
        idle_count = sum(1 for w in self._workers if w.job is None)
        wanted = min(len(self.queue) - idle_count, self.size - len(self._workers))
        if wanted > 0:
            self._start_workers(wanted)
        while self.queue:
            idle = next((w for w in self._workers if w.job is None), None)
            if idle is None:
                return
            job = self._next_job_for(idle)
            job.attempts += 1
            idle.job = job
            sweep = {**job.sweep, "concurrent_times": self.concurrent_times}
            idle.future = idle.handle.run.remote(job.flags, job.seed, job.data_key, self.command, sweep)
            if self.on_start is not None:
                self.on_start(job, idle.where)

    def _next_job_for(self, worker: _Worker) -> Job:
        """The queued job with the flags the worker last ran (no recompile), else the first."""
        for i, job in enumerate(self.queue):
            if job.flags == worker.last_flags:
                del self.queue[i]
                break
        else:
            job = self.queue.popleft()
        worker.last_flags = job.flags
        return job

    def next_outcome(self, timeout: float | None = None) -> Outcome | None:
        """The next finished job (None if none finished within ``timeout`` s, or none is left)."""
        self._dispatch()
        busy = [w for w in self._workers if w.future is not None]
        if not busy:
            return None
        ready, _ = self.ray.wait([w.future for w in busy], num_returns=1, timeout=timeout)
        if not ready:
            return None
        worker = next(w for w in busy if w.future == ready[0])
        job = worker.job
        assert job is not None
        worker.job = worker.future = None
        try:
            return Outcome(job, self.ray.get(ready[0]))
        except self.ray.exceptions.RayActorError as e:
            # The worker died under the run: replace it, and try the run again if it may be.
            self._workers.remove(worker)
            if job.attempts <= self.options.retries:
                self.queue.appendleft(job)
                self._dispatch()
                return self.next_outcome(timeout)
            return Outcome(job, None, f"its worker died {job.attempts} time(s): {_first_line(e)}")
        except self.ray.exceptions.RayTaskError as e:
            return Outcome(job, None, _first_line(e.cause if e.cause is not None else e))

    def pending(self) -> int:
        return len(self.queue) + len(self.running)

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(Exception):     # a worker already gone
                self.ray.kill(w.handle)
        self._workers.clear()
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False


def _first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


def wait_all(pool: RunPool, on_outcome: Callable[[Outcome], None], *, tick: float = 1.0,
             on_tick: Callable[[], None] | None = None) -> None:
    """Drive ``pool`` until every job is done, calling ``on_outcome`` for each as it lands."""
    last = time.monotonic()
    while pool.pending():
        outcome = pool.next_outcome(timeout=tick)
        if outcome is not None:
            on_outcome(outcome)
        if on_tick is not None and time.monotonic() - last >= tick:
            on_tick()
            last = time.monotonic()
