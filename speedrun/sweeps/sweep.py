"""``speedrun sweep``: a spec's runs on Ray, each kept the moment it finishes, resumable.

The order of work: check every run's flags (one line and nothing run when one is bad), load each
dataset once, skip every run the folder already holds, tune where the spec says so, then train
the seeded runs; after each run its file is written and its variant's record merged again, so a
sweep stopped at any point (Ctrl-C, a lost node, a time limit) keeps all it finished, and the
same command started again does only what is missing.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speedrun.data.cifar10 import Cifar10
from speedrun.data.loading import load_cifar10
from speedrun.errors import SpeedrunError
from speedrun.overrides import TrainSettings
from speedrun.results.records import DEFAULT_RESULTS_DIR
from speedrun.settings import check, setting
from speedrun.sweeps.plan import Arm, PlannedRun, arms, check_flags, flag_words, planned_runs
from speedrun.sweeps.pool import Job, Outcome, RayOptions, RunPool, wait_all
from speedrun.sweeps.spec import SpecError, SweepSpec
from speedrun.sweeps.store import Piece, SweepFolder, check_no_foreign_records, merge_runs, write_merged
from speedrun.sweeps.tune import ArmStudy, TrialResult, TuneResult, trial_value


class SweepInterrupted(SpeedrunError):
    """Ctrl-C: the finished runs are kept; the same command again does the rest."""

    exit_code = 130


@dataclass(frozen=True)
class SweepOptions:
    """Where a sweep's folder is, how its runs reach Ray, and how often it reports progress."""

    out: str | None = setting(None, "the sweep's folder; the same folder resumes it (default: "
                                    f"{DEFAULT_RESULTS_DIR}/sweeps/NAME)", metavar="DIR")
    ray: RayOptions = field(default_factory=RayOptions)
    progress_every_s: float = setting(10.0, "say done/running/failed/left every S seconds", low=0.1, high=86_400,
                                      flag="--progress-every", metavar="S")
    max_runs: int = setting(10_000, "refuse a spec that plans more runs than this (variants x grid points x seeds, "
                                    "plus tuning trials)", low=1, high=10**7, metavar="N")

    def __post_init__(self) -> None:
        check(self)


@dataclass
class SweepReport:
    """What a sweep did: the variant records it wrote, what it skipped, failed and tuned."""

    folder: Path
    records: dict[str, list[Path]] = field(default_factory=dict)
    ran: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    tuned: dict[str, TuneResult] = field(default_factory=dict)
    concurrent_times: bool = False
    elapsed_s: float = 0.0


def _data_key(options) -> str:
    return f"{options.data_dir or ''}|{int(options.download)}"


class Progress:
    """Says done / running / failed / left, the time so far and an estimate of the time left."""

    def __init__(self, total: int, done: int, workers: int, log: Callable[[str], None], every_s: float) -> None:
        self.total, self.done, self.failed, self.workers = total, done, 0, workers
        self.log, self.every_s = log, every_s
        self.start = time.monotonic()
        self._ran = 0
        self._last = self.start

    def finished(self, ok: bool) -> None:
        self.done += 1
        self._ran += 1
        self.failed += 0 if ok else 1

    def line(self, running: int) -> str:
        elapsed = time.monotonic() - self.start
        left = self.total - self.done - running
        eta = ""
        if self._ran:
            per_run = elapsed * self.workers / self._ran
            eta = f", about {_duration(per_run * (left + running) / self.workers)} left"
        return (f"sweep: {self.done - self.failed} done, {running} running, {self.failed} failed, "
                f"{left} left, {_duration(elapsed)} elapsed{eta}")

    def maybe_say(self, running: int) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self.log(self.line(running))
            self._last = time.monotonic()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_sweep(spec: SweepSpec, options: SweepOptions, *, log: Callable[[str], None] = print,
              command: Sequence[str] = ("speedrun", "sweep"), data: Cifar10 | None = None,
              on_start: Callable[[Job, dict], None] | None = None) -> SweepReport:
    """Run ``spec`` into ``options.out`` (see the module's docstring); returns what it did.

    ``data``: the dataset every run reads, already loaded (else each ``--data-dir`` the runs
    name is loaded once). ``on_start(job, worker)`` is called as each run is handed to a worker
    (``worker`` holds its host and process id).
    """
    if options.out is None:
        raise SpeedrunError("a sweep needs a folder: set SweepOptions.out (the command line defaults it)")
    folder = SweepFolder(options.out)
    planned = planned_run_count(spec)
    if planned > options.max_runs:
        raise SpecError(f"{spec.source}: plans {planned:,} runs, more than --max-runs {options.max_runs:,}; shrink "
                        f"the grid or the seeds, or raise --max-runs")
    all_arms = arms(spec)
    labels = [a.label for a in all_arms]
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise SpecError(f"{spec.source}: two variants or grid points are both named {dup!r}; rename one")
    parsed = check_flags(spec, all_arms)
    sweep_info = {"name": spec.name, "spec": spec.source}
    report = SweepReport(folder.root)
    started = time.monotonic()
    tuned_arms = [a for a in all_arms if a.search] if spec.tune else []
    # Refuse before running anything if the folder holds runs of other flags (the spec changed).
    for arm in all_arms:
        if arm not in tuned_arms:
            _check_pieces(folder, planned_runs(arm, spec.seeds))

    check_no_foreign_records(folder, labels)
    datasets, arm_data = _load_data(spec, all_arms, parsed, data)      # data problems show before Ray starts
    pool = RunPool(options.ray, command=command, on_start=on_start)     # a bad --address fails here
    try:
        pool.share(datasets)
    except BaseException:
        pool.close()
        raise
    report.concurrent_times = pool.concurrent_times
    if pool.concurrent_times:
        log(f"sweep: no GPU in the Ray cluster: {pool.size} CPU worker(s); times are taken side by side "
            f"and the records say so (they rank nothing)")
    else:
        log(f"sweep: {pool.size} GPU worker(s), one run per GPU at a time")
    try:
        if tuned_arms:
            assert spec.tune is not None
            report.tuned = _tune(spec, tuned_arms, arm_data, folder, pool, sweep_info, log, options)
        finals: dict[str, list[PlannedRun]] = {}
        for arm in all_arms:
            extra: list[str] = []
            if arm in tuned_arms:
                best = report.tuned[arm.label].best
                if best is None:
                    report.failed[arm.label] = "no tuning trial finished, so there is no configuration to run"
                    continue
                extra = flag_words(best.params)
            finals[arm.label] = planned_runs(arm, spec.seeds, extra)
            _check_pieces(folder, finals[arm.label])
        _train(spec, all_arms, finals, arm_data, folder, pool, sweep_info, report, log, options, command)
    except KeyboardInterrupt:
        raise SweepInterrupted(f"interrupted: every finished run is kept in {folder.root}; run the same "
                               f"command again to do the rest") from None
    finally:
        pool.close()
    report.elapsed_s = time.monotonic() - started
    return report


def planned_run_count(spec: SweepSpec) -> int:
    """The runs a spec asks for, counted without expanding it: arms x seeds, plus each tuned arm's trials."""
    points = math.prod(len(values) for values in spec.grid.values())
    arms_count = len(spec.variants) * points
    tuned = sum(1 for v in spec.variants if v.search) * points if spec.tune else 0
    return arms_count * len(spec.seeds) + tuned * (spec.tune.trials if spec.tune else 0)


def _load_data(spec: SweepSpec, all_arms: Sequence[Arm], parsed: dict[str, TrainSettings],
               given: Cifar10 | None) -> tuple[dict[str, Cifar10], dict[str, str]]:
    """Each dataset the arms read, loaded once (and its subsets checked against it)."""
    datasets: dict[str, Cifar10] = {}
    arm_data: dict[str, str] = {}
    for arm in all_arms:
        options = parsed[arm.label].options
        key = "given" if given is not None else _data_key(options)
        if given is not None:
            datasets[key] = given
        elif key not in datasets:
            datasets[key] = load_cifar10(options.data_dir, download=options.download)
        try:
            datasets[key].subset(options.train_subset, options.test_subset)
        except SpeedrunError as e:
            raise SpecError(f"{spec.source}: variant {arm.label!r}: {e}") from None
        arm_data[arm.label] = key
    return datasets, arm_data


def _check_pieces(folder: SweepFolder, runs: Sequence[PlannedRun]) -> None:
    for run in runs:
        piece = folder.read_piece(folder.run_path(run.run_id))
        if piece is None or piece.record is None:
            continue
        ran = piece.record.get("sweep", {}).get("flags")
        if ran is not None and list(ran) != list(run.flags):
            raise SpeedrunError(
                f"{piece.path} was run with other flags ({' '.join(ran)}) than the spec now gives "
                f"({' '.join(run.flags)}); give a new --out, or delete {piece.path.parent} to run it again")


def _train(spec: SweepSpec, all_arms: Sequence[Arm], finals: dict[str, list[PlannedRun]],
           arm_data: dict[str, str], folder: SweepFolder, pool: RunPool, sweep_info: dict,
           report: SweepReport, log: Callable[[str], None], options: SweepOptions,
           command: Sequence[str]) -> None:
    pieces: dict[str, dict[int, Piece]] = {label: {} for label in finals}
    todo: list[PlannedRun] = []
    for label, runs in finals.items():
        for run in runs:
            piece = folder.read_piece(folder.run_path(run.run_id))
            if piece is not None and piece.finished:
                pieces[label][run.seed] = piece
                report.skipped += 1
            else:
                todo.append(run)
    if report.skipped:
        log(f"sweep: {report.skipped} run(s) already in {folder.root}, skipped; {len(todo)} to run")
    by_key = {run.run_id: run for run in todo}
    for run in todo:
        pool.submit(Job(run.run_id, run.flags, run.seed, arm_data[run.label],
                        {**sweep_info, "run_id": run.run_id, "variant": run.label}))
    total = sum(len(r) for r in finals.values())
    progress = Progress(total, report.skipped, pool.size, log, options.progress_every_s)
    for label in finals:       # records for what an earlier start finished
        if pieces[label]:
            report.records[label] = write_merged(folder, label, merge_runs(
                label, spec.seeds, pieces[label], sweep_info, command))

    def landed(outcome: Outcome) -> None:
        run = by_key[outcome.job.key]
        path = folder.run_path(run.run_id)
        if outcome.record is not None:
            folder.write_record_piece(path, outcome.record)
            status = outcome.record["runs"][0]["status"]
        else:
            error = outcome.error or "failed"
            folder.write_failure(path, run.run_id, run.seed, error, outcome.job.attempts)
            report.failed[run.run_id] = error
            status = f"failed ({error})"
        report.ran += 1
        progress.finished(outcome.record is not None)
        piece = folder.read_piece(path)
        assert piece is not None
        pieces[run.label][run.seed] = piece
        report.records[run.label] = write_merged(folder, run.label, merge_runs(
            run.label, spec.seeds, pieces[run.label], sweep_info, command))
        log(f"  {run.run_id}: {status}" + _accuracy_text(outcome.record))

    wait_all(pool, landed, tick=1.0, on_tick=lambda: progress.maybe_say(len(pool.running)))
    log(progress.line(0))


def _accuracy_text(record: dict | None) -> str:
    if record is None:
        return ""
    run = record["runs"][0]
    acc = run.get("final_test_acc")
    return f", test accuracy {acc:.4f}, {run.get('train_time_s') or 0:.1f}s" if acc is not None else ""


def _tune(spec: SweepSpec, tuned_arms: Sequence[Arm], arm_data: dict[str, str], folder: SweepFolder,
          pool: RunPool, sweep_info: dict, log: Callable[[str], None],
          options: SweepOptions) -> dict[str, TuneResult]:
    tune = spec.tune
    assert tune is not None
    studies = {arm.label: ArmStudy(arm.label, arm.search, tune, i) for i, arm in enumerate(tuned_arms)}
    arm_of = {arm.label: arm for arm in tuned_arms}
    left: dict[str, list[int]] = {}
    resumed = 0
    for label, study in studies.items():
        left[label] = []
        for index in range(tune.trials):
            piece = folder.read_piece(folder.trial_path(label, index))
            params = (piece.record or {}).get("sweep", {}).get("params") if piece is not None else None
            if piece is not None and piece.finished and isinstance(params, dict):
                study.add_finished(TrialResult(index, params, trial_value(piece.record)))
                resumed += 1
            else:
                left[label].append(index)
    total = len(studies) * tune.trials
    log(f"sweep: tuning {len(studies)} variant(s), {tune.trials} trial(s) each ({tune.sampler})"
        + (f"; {resumed} trial(s) already in {folder.root}" if resumed else ""))
    progress = Progress(total, resumed, pool.size, log, options.progress_every_s)
    jobs: dict[str, tuple[str, int]] = {}

    def ask_more() -> None:
        # Keep at most one trial per worker in flight, taken from the arms in turn, so each
        # study learns from finished trials before it asks many more.
        while len(pool.running) + len(pool.queue) < pool.size and any(left.values()):
            for label in list(studies):
                if not left[label] or len(pool.running) + len(pool.queue) >= pool.size:
                    continue
                index = left[label].pop(0)
                params = studies[label].ask(index)
                key = f"tune:{label}/trial-{index}"
                jobs[key] = (label, index)
                arm = arm_of[label]
                pool.submit(Job(key, (*arm.flags, *flag_words(params)), tune.seed, arm_data[label],
                                {**sweep_info, "variant": label, "trial": index, "params": params}))

    def landed(outcome: Outcome) -> None:
        label, index = jobs.pop(outcome.job.key)
        path = folder.trial_path(label, index)
        if outcome.record is not None:
            folder.write_record_piece(path, outcome.record)
        else:
            folder.write_failure(path, outcome.job.key, tune.seed, outcome.error or "failed", outcome.job.attempts)
        value = trial_value(outcome.record)
        studies[label].tell(index, value)
        progress.finished(outcome.record is not None)
        shown = "failed" if value is None else f"{value:.4f}"
        log(f"  {label} trial {index}: {shown}  {' '.join(flag_words(outcome.job.sweep['params']))}")
        ask_more()

    ask_more()
    wait_all(pool, landed, tick=1.0, on_tick=lambda: progress.maybe_say(len(pool.running)))
    results = {label: study.result() for label, study in studies.items()}
    for label, result in results.items():
        best = result.best
        log(f"sweep: {label}: best of {len(result.trials)} trial(s): "
            + ("none finished" if best is None else f"{best.value:.4f} with {' '.join(flag_words(best.params))}"))
    return results
