"""``speedrun sweep``: a spec's runs on Ray Tune, each kept the moment it finishes, resumable.

The order of work: check every run's flags (every problem named at once, nothing run), refuse a
folder another spec made, find what the folder already holds (with nothing left, Ray never
starts), load each dataset once, tune where the spec says so, then train the seeded runs. After
each run its file is written, its variant's record merged again and the per-run table rewritten,
so a sweep stopped at any point (Ctrl-C, a lost node, a killed driver) keeps all it finished, and
the same command started again does only what is missing.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speedrun.data.cifar10 import Cifar10
from speedrun.data.loading import load_cifar10
from speedrun.errors import SpeedrunError
from speedrun.overrides import TrainSettings
from speedrun.results.records import DEFAULT_RESULTS_DIR
from speedrun.settings import check, setting
from speedrun.sweeps.execution import Cluster, RayOptions, ray_cluster, run_experiment
from speedrun.sweeps.plan import Arm, PlannedRun, arms, check_flags, flag_words, planned_runs
from speedrun.sweeps.spec import SpecError, SweepSpec
from speedrun.sweeps.store import Piece, SweepFolder, merge_runs, write_merged
from speedrun.sweeps.tune import TrialResult, TuneResult, best_of, scheduler_for, search_for

RUNS_TABLE = "runs.csv"        # one row per seeded run
TRIALS_TABLE = "trials.csv"    # one row per tuning trial

if TYPE_CHECKING:
    from speedrun.sweeps.callbacks import Landed


class SweepInterrupted(SpeedrunError):
    """Ctrl-C: the finished runs are kept; the same command again does the rest."""

    exit_code = 130


@dataclass(frozen=True)
class SweepOptions:
    """Where a sweep's folder is, how its runs reach Ray, and how often it reports progress."""

    out: str | None = setting(None, "the sweep's folder; the same folder resumes it (default: "
                                    f"{DEFAULT_RESULTS_DIR}/sweeps/NAME)", metavar="DIR")
    ray: RayOptions = field(default_factory=RayOptions)
    progress_every_s: float = setting(10.0, "print the table of running runs every S seconds", low=0.1, high=86_400,
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
    ran: int = 0                  # seeded runs this start finished or gave up on
    trials_ran: int = 0           # tuning trials this start ran
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    tuned: dict[str, TuneResult] = field(default_factory=dict)
    concurrent_times: bool = False
    elapsed_s: float = 0.0

    @property
    def trained(self) -> int:
        """Seeded runs this start trained to the end (``ran`` less the failed ones)."""
        return self.ran - sum(1 for key in self.failed if not key.startswith("tune:"))


@dataclass
class _Sweep:
    """One start of a sweep: what it reads, and where it writes."""

    spec: SweepSpec
    options: SweepOptions
    folder: SweepFolder
    arms: list[Arm]
    parsed: dict[str, TrainSettings]
    report: SweepReport
    log: Callable[[str], None]
    command: Sequence[str]
    callbacks: Sequence[Any] = ()
    arm_data: dict[str, str] = field(default_factory=dict)
    pieces: dict[str, dict[int, Piece]] = field(default_factory=dict)

    def info(self, arm: Arm) -> dict:
        return {"name": self.spec.name, "spec": self.spec.source, "variant": arm.variant.name, "arm": arm.label,
                "grid": dict(arm.cell)}


def run_sweep(spec: SweepSpec, options: SweepOptions, *, log: Callable[[str], None] = print,
              command: Sequence[str] = ("speedrun", "sweep"), data: Cifar10 | None = None,
              callbacks: Sequence[Any] = ()) -> SweepReport:
    """Run ``spec`` into ``options.out`` (see the module's docstring); returns what it did.

    ``data``: the dataset every run reads, already loaded (else each ``--data-dir`` the runs
    name is loaded once). ``callbacks``: more Ray Tune callbacks for every experiment.
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
    owner = owner_table(all_arms, parsed)
    folder.check_owner(owner)
    sweep = _Sweep(spec, options, folder, all_arms, parsed, SweepReport(folder.root), log, command, callbacks)
    started = time.monotonic()
    trials_left = {a.label: sorted(set(range(spec.tune.trials)) - {t.index for t in _trial_results(sweep, a)})
                   for a in all_arms if a.search and spec.tune}
    finals = _final_runs(sweep)
    runs_left = [r for runs in finals.values() for r in runs if not getattr(folder.read_piece(folder.run_path(r.run_id)),
                                                                              "finished", False)]
    if not any(trials_left.values()) and not runs_left:
        log(f"sweep: every run is already in {folder.root}; nothing to do")
        _train(sweep, finals, None, {})
        _read_tuning(sweep)
        return sweep.report
    try:
        datasets, sweep.arm_data = _load_data(spec, all_arms, parsed, data)    # data problems show before Ray starts
        with ray_cluster(options.ray) as cluster:
            folder.claim(spec.name, spec.source, owner)
            sweep.report.concurrent_times = cluster.concurrent_times
            log(f"sweep: {cluster.size} GPU(s), one run each at a time" if cluster.gpus else
                f"sweep: no GPU in the Ray cluster: {cluster.size} run(s) side by side on CPUs; the records say "
                f"their times were taken so (they rank nothing)")
            for arm in all_arms:
                if trials_left.get(arm.label):
                    _tune(sweep, arm, trials_left[arm.label], cluster, datasets)
            _read_tuning(sweep)
            _train(sweep, _final_runs(sweep), cluster, datasets)
    except KeyboardInterrupt:
        kept = sum(1 for _ in folder.root.glob("*/*/*.run.json")) if folder.root.is_dir() else 0
        raise SweepInterrupted(f"interrupted: {kept} finished run(s) and trial(s) are kept in {folder.root}; run the "
                               f"same command again to do the rest" if kept else
                               "interrupted before any run finished; nothing was kept") from None
    sweep.report.elapsed_s = time.monotonic() - started
    return sweep.report


def owner_table(all_arms: Sequence[Arm], parsed: dict[str, TrainSettings]) -> dict[str, dict]:
    """What makes a folder this spec's: each arm's parsed settings and search space, by label."""
    return {a.label: {**parsed[a.label].table(), "search": [dataclasses.asdict(d) for d in a.search]}
            for a in all_arms}


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
        key = "given" if given is not None else f"{options.data_dir or ''}|{int(options.download)}"
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


def _read_tuning(sweep: _Sweep) -> None:
    if sweep.spec.tune:
        sweep.report.tuned = {a.label: best_of(a.label, _trial_results(sweep, a)) for a in sweep.arms if a.search}


def _final_runs(sweep: _Sweep) -> dict[str, list[PlannedRun]]:
    """Each arm's seeded runs, by label; a tuned arm's only once its tuning is done (with its winner)."""
    finals: dict[str, list[PlannedRun]] = {}
    for arm in sweep.arms:
        extra: list[str] = []
        if arm.search and sweep.spec.tune:
            result = best_of(arm.label, _trial_results(sweep, arm))
            if len(result.trials) < sweep.spec.tune.trials:
                continue
            if result.best is None:
                sweep.report.failed[f"tune:{arm.label}"] = "no tuning trial finished, so there is no configuration to run"
                continue
            extra = flag_words(result.best.params)
        finals[arm.label] = planned_runs(arm, sweep.spec.seeds, extra)
    return finals


def _trial_results(sweep: _Sweep, arm: Arm) -> list[TrialResult]:
    """The tuning trials the folder holds for ``arm`` (finished, stopped early, or failed)."""
    assert sweep.spec.tune is not None
    pieces = [(i, sweep.folder.read_piece(sweep.folder.trial_path(arm.label, i))) for i in range(sweep.spec.tune.trials)]
    return [TrialResult(i, p.params, p.accuracy if p.status in ("ok", "stopped") else None, p.status)
            for i, p in pieces if p is not None]


def _keep(sweep: _Sweep, path: Path, outcome: Landed, run_id: str, seed: int) -> None:
    """A run's (or trial's) file: its record, or why it has none."""
    if outcome.record is not None:
        sweep.folder.write_record_piece(path, outcome.record)
    else:
        sweep.folder.write_failure(path, run_id, seed, outcome.error or outcome.status, outcome.attempts,
                                   status=outcome.status, params=outcome.params, accuracy=outcome.accuracy)


def _tune(sweep: _Sweep, arm: Arm, left: list[int], cluster: Cluster, datasets: dict[str, Cifar10]) -> None:
    """``len(left)`` more trials of ``arm``'s search, each written to its trial file as it ends."""
    tune, log = sweep.spec.tune, sweep.log
    assert tune is not None
    earlier = _trial_results(sweep, arm)
    log(f"sweep: tuning {arm.label}: {len(left)} trial(s) of {tune.trials} ({tune.sampler}"
        + (", early stopping" if tune.early_stop else "") + ")"
        + (f"; {len(earlier)} already in {sweep.folder.root}" if earlier else ""))
    key, free, searched = f"tune:{arm.label}", list(left), [d.flag for d in arm.search]
    job = {"flags": list(arm.flags), "seed": tune.seed, "data": sweep.arm_data[arm.label],
           "sweep": {**sweep.info(arm), "concurrent_times": sweep.report.concurrent_times}, "search": searched}

    def landed(outcome: Landed) -> None:
        index = free.pop(0)
        if outcome.record is not None:
            outcome.record["sweep"]["trial"] = index
        _keep(sweep, sweep.folder.trial_path(arm.label, index), outcome, key, tune.seed)
        shown = "-" if outcome.accuracy is None else f"{outcome.accuracy:.4f}"
        log(f"  {arm.label} trial {index}: {outcome.status}, accuracy {shown}  {' '.join(flag_words(outcome.params))}"
            + (f" ({outcome.error})" if outcome.status == "failed" else ""))
        _write_tables(sweep)

    _experiment(sweep, f"tune-{arm.label}", {key: job}, {key: (arm.variant.name, arm.cell_text, f"{tune.seed} (tuning)")},
                landed, cluster, datasets, total=len(left), search_space={key: searched},
                search=search_for(arm.search, tune, sweep.arms.index(arm), earlier),
                scheduler=scheduler_for(tune, math.ceil(sweep.parsed[arm.label].recipe.train.epochs)), samples=len(left))
    result = best_of(arm.label, _trial_results(sweep, arm))
    sweep.report.trials_ran += len(result.trials) - len(earlier)      # read back: under ray:// the callbacks run remotely
    _write_tables(sweep)
    best = result.best
    log(f"sweep: {arm.label}: best of {len(result.trials)} trial(s): "
        + ("none finished" if best is None else f"{best.value:.4f} with {' '.join(flag_words(best.params))}"))


def _train(sweep: _Sweep, finals: dict[str, list[PlannedRun]], cluster: Cluster | None,
           datasets: dict[str, Cifar10]) -> None:
    """The seeded runs the folder does not hold yet, each written as it lands; with no
    ``cluster``, only the records and tables of what the folder holds."""
    folder, report, log = sweep.folder, sweep.report, sweep.log
    by_arm = {a.label: a for a in sweep.arms}
    sweep.pieces = {label: {} for label in finals}
    todo: dict[str, PlannedRun] = {}

    def read(run: PlannedRun) -> Piece | None:
        piece = folder.read_piece(folder.run_path(run.run_id))
        if piece is not None:
            sweep.pieces[run.label][run.seed] = piece
        return piece

    for run in (r for runs in finals.values() for r in runs):
        if (piece := read(run)) is not None and piece.finished:
            report.skipped += 1
        else:
            todo[run.run_id] = run
    if report.skipped and todo:
        log(f"sweep: {report.skipped} run(s) already in {folder.root}, skipped; {len(todo)} to run")
    _merge_all(sweep, list(finals))
    if not todo or cluster is None:
        return

    def landed(outcome: Landed) -> None:
        run = todo[outcome.key]
        _keep(sweep, folder.run_path(run.run_id), outcome, run.run_id, run.seed)
        read(run)
        _merge_all(sweep, [run.label])
        shown = "" if outcome.accuracy is None else f", test accuracy {outcome.accuracy:.4f}"
        seconds = (outcome.record or {}).get("runs", [{}])[0].get("train_time_s")
        log(f"  {run.run_id}: {outcome.status}{shown}" + (f", {seconds:.1f}s" if seconds is not None else "")
            + (f" (attempt {outcome.attempts})" if outcome.attempts > 1 else "")
            + (f": {outcome.error}" if outcome.record is None else ""))

    jobs = {key: {"flags": list(run.flags), "seed": run.seed, "data": sweep.arm_data[run.label],
                  "sweep": {**sweep.info(by_arm[run.label]), "run_id": key, "concurrent_times": report.concurrent_times}}
            for key, run in todo.items()}
    labels = {key: (by_arm[run.label].variant.name, by_arm[run.label].cell_text, str(run.seed)) for key, run in todo.items()}
    _experiment(sweep, "runs", jobs, labels, landed, cluster, datasets, total=len(todo), grid=list(todo))
    for run in todo.values():         # read back: under ray:// the callbacks ran on the cluster's head
        if (piece := read(run)) is not None:
            report.ran += 1
            if not piece.finished:
                report.failed[run.run_id] = piece.error or "failed"
    _merge_all(sweep, list(finals))
    log(f"sweep: {report.trained} run(s) trained, {report.ran - report.trained} failed, {report.skipped} skipped; "
        f"{len(todo) - report.ran} not run")


def _experiment(sweep: _Sweep, name: str, jobs: dict[str, dict], labels: dict[str, tuple[str, str, str]],
                landed: Callable[[Landed], None], cluster: Cluster, datasets: dict[str, Cifar10], *, total: int,
                search_space: dict[str, list[str]] | None = None, **trials: Any) -> None:
    """One Tune experiment of ``jobs``, each trial's end handed to ``landed``, the live table printed."""
    from speedrun.sweeps.callbacks import Progress

    progress = Progress(landed, sweep.log, total=total, workers=cluster.size, every_s=sweep.options.progress_every_s,
                        labels=labels, search=search_space or {})
    run_experiment(name, sweep.folder.root, jobs, datasets, cluster, sweep.options.ray, sweep.command,
                   [progress, *sweep.callbacks], **trials)


def _merge_all(sweep: _Sweep, labels: Sequence[str]) -> None:
    """Merge each arm's runs into its record again, then rewrite the tables."""
    for arm in sweep.arms:
        if arm.label in labels and sweep.pieces.get(arm.label):
            sweep.report.records[arm.label] = write_merged(sweep.folder, arm.label, merge_runs(
                arm.label, sweep.spec.seeds, sweep.pieces[arm.label], sweep.info(arm), sweep.command))
    _write_tables(sweep)


def _write_tables(sweep: _Sweep) -> None:
    """``runs.csv`` (every seeded run the folder holds) and ``trials.csv`` (every tuning trial)."""
    runs, trials = [], []
    for arm in sweep.arms:
        grid = {f"grid {k}": "+".join(map(str, v)) if isinstance(v, tuple) else v for k, v in arm.cell.items()}
        for seed, piece in sorted(sweep.pieces.get(arm.label, {}).items()):
            runs.append({"run_id": f"{arm.label}/seed-{seed}", "variant": arm.variant.name, **grid, "seed": seed,
                         **piece.row()})
        for index in range(sweep.spec.tune.trials if sweep.spec.tune and arm.search else 0):
            if (trial := sweep.folder.read_piece(sweep.folder.trial_path(arm.label, index))) is not None:
                trials.append({"variant": arm.variant.name, **grid, "trial": index,
                               **{f"tried {k}": v for k, v in trial.params.items()}, **trial.row()})
    for name, rows in ((RUNS_TABLE, runs), (TRIALS_TABLE, trials)):
        if rows:
            sweep.folder.write_table(name, rows)
