"""``speedrun sweep``: a spec's runs on Ray Tune, each kept the moment it finishes, resumable.

The order of work: check every run's flags (every problem named at once, nothing run), refuse a
folder another spec made, find what the folder already holds (with nothing left, Ray never
starts), load each dataset once, tune where the spec says so, then train the seeded runs. After
each run its file is written, its variant's record merged again and the tables rewritten, so a
sweep stopped at any point (Ctrl-C, a lost node, a killed driver) keeps all it finished, and the
same command started again does only what is missing.
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

if TYPE_CHECKING:
    from speedrun.sweeps.callbacks import Landed

RUNS_TABLE = "runs.csv"        # one row per seeded run
TRIALS_TABLE = "trials.csv"    # one row per tuning trial


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


def run_sweep(spec: SweepSpec, options: SweepOptions, *, log: Callable[[str], None] = print,
              command: Sequence[str] = ("speedrun", "sweep"), data: Cifar10 | None = None,
              callbacks: Sequence[Any] = ()) -> SweepReport:
    """Run ``spec`` into ``options.out`` (see the module's docstring); returns what it did.

    ``data``: the dataset every run reads, already loaded (else each ``--data-dir`` the runs
    name is loaded once). ``callbacks``: more Ray Tune callbacks for every experiment.
    """
    if options.out is None:
        raise SpeedrunError("a sweep needs a folder: set SweepOptions.out (the command line defaults it)")
    planned = planned_run_count(spec)
    if planned > options.max_runs:
        raise SpecError(f"{spec.source}: plans {planned:,} runs, more than --max-runs {options.max_runs:,}; shrink "
                        f"the grid or the seeds, or raise --max-runs")
    sweep = _Sweep(spec, options, log, command, callbacks)
    started, folder = time.monotonic(), sweep.folder
    trials_left = {a.label: sweep.trials_left(a) for a in sweep.arms}
    pending = None if any(trials_left.values()) else sweep.pending()   # tuning would change the seeded runs
    if pending is not None and not pending[1]:
        log(f"sweep: every run is already in {folder.root}; nothing to do")
        sweep.train(None, {}, pending)
        return sweep.report
    try:
        datasets = sweep.load(data)        # data problems show before Ray starts
        with ray_cluster(options.ray) as cluster:
            folder.claim(spec.name, spec.source, sweep.owner)
            sweep.report.concurrent_times = cluster.concurrent_times
            if cluster.gpus:
                log(f"sweep: {cluster.size} GPU(s), one run each at a time")
            elif cluster.concurrent_times:
                log(f"sweep: no GPU in the Ray cluster: {cluster.size} run(s) side by side on CPUs; the records say "
                    f"their times were taken so (they rank nothing)")
            else:
                log("sweep: no GPU in the Ray cluster: one run at a time on CPUs")
            for arm in sweep.arms:
                if trials_left[arm.label]:
                    sweep.tune(arm, trials_left[arm.label], cluster, datasets)
            sweep.train(cluster, datasets, pending)
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
    tuned = sum(1 for v in spec.variants if v.search) * points * spec.tune.trials if spec.tune else 0
    return len(spec.variants) * points * len(spec.seeds) + tuned


class _Sweep:
    """One start of a sweep: its arms and their settings, its folder, and what it has done."""

    def __init__(self, spec: SweepSpec, options: SweepOptions, log: Callable[[str], None], command: Sequence[str],
                 callbacks: Sequence[Any]) -> None:
        assert options.out is not None
        self.spec, self.options, self.log, self.command, self.callbacks = spec, options, log, command, callbacks
        self.folder = SweepFolder(options.out)
        self.arms = arms(spec)
        labels = [a.label for a in self.arms]
        if len(set(labels)) != len(labels):
            dup = next(x for x in labels if labels.count(x) > 1)
            raise SpecError(f"{spec.source}: two variants or grid points are both named {dup!r}; rename one")
        self.parsed = check_flags(spec, self.arms)
        if spec.tune and spec.tune.early_stop:
            for arm in self.arms:
                epochs = math.ceil(self.parsed[arm.label].recipe.train.epochs)
                if arm.search and spec.tune.grace_epochs >= epochs:
                    raise SpecError(f"{spec.source}: [tune] grace-epochs {spec.tune.grace_epochs} leaves no epoch to stop "
                                    f"variant {arm.label!r} at (it trains {epochs}); lower grace-epochs or set "
                                    f"early-stop = false")
        self.owner = owner_table(self.arms, self.parsed)
        self.folder.check_owner(self.owner)
        self.report = SweepReport(self.folder.root)
        self.pieces: dict[str, dict[int, Piece]] = {label: {} for label in labels}     # the seeded runs' files
        self.arm_data: dict[str, str] = {}

    def info(self, arm: Arm) -> dict:
        """What a run's record says of its place in the sweep."""
        return {"name": self.spec.name, "spec": self.spec.source, "variant": arm.variant.name, "arm": arm.label,
                "grid": dict(arm.cell), "concurrent_times": self.report.concurrent_times}

    def load(self, given: Cifar10 | None) -> dict[str, Cifar10]:
        """Each dataset the arms read, loaded once (and every arm's subsets checked against it)."""
        datasets: dict[str, Cifar10] = {}
        for arm in self.arms:
            options = self.parsed[arm.label].options
            key = "given" if given is not None else f"{options.data_dir or ''}|{int(options.download)}"
            if key not in datasets:
                datasets[key] = given if given is not None else load_cifar10(options.data_dir, download=options.download)
            try:
                datasets[key].subset(options.train_subset, options.test_subset)
            except SpeedrunError as e:
                raise SpecError(f"{self.spec.source}: variant {arm.label!r}: {e}") from None
            self.arm_data[arm.label] = key
        return datasets

    def read(self, run: PlannedRun) -> Piece | None:
        piece = self.folder.read_piece(self.folder.run_path(run.run_id))
        if piece is not None:
            self.pieces[run.label][run.seed] = piece
        return piece

    def trial_budget(self, arm: Arm) -> int:
        """How many tuning trials ``arm`` gets: the spec's count where it has a search space, else none."""
        return self.spec.tune.trials if self.spec.tune and arm.search else 0

    def trials(self, arm: Arm) -> list[TrialResult]:
        """The tuning trials the folder holds for ``arm`` (finished, stopped early, or failed)."""
        pieces = [(i, self.folder.read_piece(self.folder.trial_path(arm.label, i))) for i in range(self.trial_budget(arm))]
        return [TrialResult(i, p.params, p.accuracy if p.status in ("ok", "stopped") else None, p.status)
                for i, p in pieces if p is not None]

    def trials_left(self, arm: Arm) -> list[int]:
        return sorted(set(range(self.trial_budget(arm))) - {t.index for t in self.trials(arm)})

    def finals(self) -> dict[str, list[PlannedRun]]:
        """Each arm's seeded runs, by label; a tuned arm's once its tuning is done, with its winner's values."""
        finals: dict[str, list[PlannedRun]] = {}
        for arm in self.arms:
            extra: list[str] = []
            if self.trial_budget(arm):
                result = self.report.tuned[arm.label] = best_of(arm.label, self.trials(arm))
                if len(result.trials) < self.trial_budget(arm):
                    continue
                if result.best is None:
                    self.report.failed[f"tune:{arm.label}"] = "no tuning trial finished, so there is no configuration"
                    continue
                extra = flag_words(result.best.params)
            finals[arm.label] = planned_runs(arm, self.spec.seeds, extra)
        return finals

    def tune(self, arm: Arm, left: list[int], cluster: Cluster, datasets: dict[str, Cifar10]) -> None:
        """``len(left)`` more trials of ``arm``'s search, each written to its trial file as it ends."""
        tune = self.spec.tune
        assert tune is not None
        earlier = self.trials(arm)
        self.log(f"sweep: tuning {arm.label}: {len(left)} trial(s) of {tune.trials} ({tune.sampler}"
                 + (", early stopping" if tune.early_stop else "") + ")"
                 + (f"; {len(earlier)} already in {self.folder.root}" if earlier else ""))
        key, free, searched = f"tune:{arm.label}", list(left), [d.flag for d in arm.search]
        job = {"flags": list(arm.flags), "seed": tune.seed, "data": self.arm_data[arm.label], "sweep": self.info(arm),
               "search": searched}

        def landed(outcome: Landed) -> None:
            index = free.pop(0)
            if outcome.record is not None:
                outcome.record["sweep"]["trial"] = index
            self.keep(self.folder.trial_path(arm.label, index), outcome, key, tune.seed)
            shown = "-" if outcome.accuracy is None else f"{outcome.accuracy:.4f}"
            self.log(f"  {arm.label} trial {index}: {outcome.status}, accuracy {shown}  "
                     f"{' '.join(flag_words(outcome.params))}" + (f" ({outcome.error})" if outcome.status == "failed" else ""))
            self.tables()

        self.experiment(f"tune-{arm.label}", {key: job}, {key: (arm.variant.name, arm.cell_text, f"{tune.seed} (tuning)")},
                        landed, cluster, datasets, total=len(left), search_space={key: searched},
                        search=search_for(arm.search, tune, self.arms.index(arm), earlier),
                        scheduler=scheduler_for(tune, math.ceil(self.parsed[arm.label].recipe.train.epochs)),
                        samples=len(left))
        result = best_of(arm.label, self.trials(arm))
        self.report.trials_ran += len(result.trials) - len(earlier)    # read back: under ray:// the callbacks run remotely
        self.tables()
        best = result.best
        self.log(f"sweep: {arm.label}: best of {len(result.trials)} trial(s): "
                 + ("none finished" if best is None else f"{best.value:.4f} with {' '.join(flag_words(best.params))}"))

    def pending(self) -> tuple[dict[str, list[PlannedRun]], dict[str, PlannedRun]]:
        """Each arm's seeded runs, and those of them the folder does not hold finished, by run id
        (every run file read once)."""
        finals = self.finals()
        return finals, {run.run_id: run for runs in finals.values() for run in runs
                        if not getattr(self.read(run), "finished", False)}

    def train(self, cluster: Cluster | None, datasets: dict[str, Cifar10],
              pending: tuple[dict[str, list[PlannedRun]], dict[str, PlannedRun]] | None = None) -> None:
        """The seeded runs the folder does not hold yet (``pending``, else read now), each written as it
        lands; with no ``cluster``, only the records and tables of what the folder holds."""
        (finals, todo), report = pending or self.pending(), self.report
        report.skipped = sum(len(runs) for runs in finals.values()) - len(todo)
        if report.skipped and todo:
            self.log(f"sweep: {report.skipped} run(s) already in {self.folder.root}, skipped; {len(todo)} to run")
        self.merge(list(finals))
        if not todo or cluster is None:
            return
        by_arm = {a.label: a for a in self.arms}

        def landed(outcome: Landed) -> None:
            run = todo[outcome.key]
            self.keep(self.folder.run_path(run.run_id), outcome, run.run_id, run.seed)
            self.read(run)
            self.merge([run.label])
            seconds = (outcome.record or {}).get("runs", [{}])[0].get("train_time_s")
            self.log(f"  {run.run_id}: {outcome.status}"
                     + ("" if outcome.accuracy is None else f", test accuracy {outcome.accuracy:.4f}")
                     + ("" if seconds is None else f", {seconds:.1f}s")
                     + (f" (attempt {outcome.attempts})" if outcome.attempts > 1 else "")
                     + (f": {outcome.error}" if outcome.record is None else ""))

        jobs = {key: {"flags": list(run.flags), "seed": run.seed, "data": self.arm_data[run.label],
                      "sweep": {**self.info(by_arm[run.label]), "run_id": key}} for key, run in todo.items()}
        labels = {key: (by_arm[run.label].variant.name, by_arm[run.label].cell_text, str(run.seed))
                  for key, run in todo.items()}
        self.experiment("runs", jobs, labels, landed, cluster, datasets, total=len(todo), grid=list(todo))
        for run in todo.values():         # read back: under ray:// the callbacks ran on the cluster's head
            if (piece := self.read(run)) is not None:
                report.ran += 1
                if not piece.finished:
                    report.failed[run.run_id] = piece.error or "failed"
        self.merge(list(finals))
        self.log(f"sweep: {report.trained} run(s) trained, {report.ran - report.trained} failed, {report.skipped} "
                 f"skipped; {len(todo) - report.ran} not run")

    def experiment(self, name: str, jobs: dict[str, dict], labels: dict[str, tuple[str, str, str]],
                   landed: Callable[[Landed], None], cluster: Cluster, datasets: dict[str, Cifar10], *, total: int,
                   search_space: dict[str, list[str]] | None = None, **trials: Any) -> None:
        """One Tune experiment of ``jobs``, each trial's end handed to ``landed``, the live table printed."""
        from speedrun.sweeps.callbacks import Progress

        progress = Progress(landed, self.log, total=total, workers=cluster.size, every_s=self.options.progress_every_s,
                            labels=labels, search=search_space or {})
        run_experiment(name, self.folder.root, jobs, datasets, cluster, self.options.ray, self.command,
                       [progress, *self.callbacks], **trials)

    def keep(self, path: Path, outcome: Landed, run_id: str, seed: int) -> None:
        """A run's (or trial's) file: its record, or why it has none."""
        if outcome.record is not None:
            self.folder.write_record_piece(path, outcome.record)
        else:
            self.folder.write_failure(path, run_id, seed, outcome.error or outcome.status, outcome.attempts,
                                      status=outcome.status, params=outcome.params, accuracy=outcome.accuracy)

    def merge(self, labels: Sequence[str]) -> None:
        """Merge each arm's runs into its record again, then rewrite the tables."""
        for arm in self.arms:
            if arm.label in labels and self.pieces[arm.label]:
                self.report.records[arm.label] = write_merged(self.folder, arm.label, merge_runs(
                    arm.label, self.spec.seeds, self.pieces[arm.label], self.info(arm), self.command))
        self.tables()

    def tables(self) -> None:
        """``runs.csv`` (every seeded run the folder holds) and ``trials.csv`` (every tuning trial)."""
        runs, trials = [], []
        for arm in self.arms:
            grid = {f"grid {k}": "+".join(map(str, v)) if isinstance(v, tuple) else v for k, v in arm.cell.items()}
            for seed, piece in sorted(self.pieces[arm.label].items()):
                runs.append({"run_id": f"{arm.label}/seed-{seed}", "variant": arm.variant.name, **grid, "seed": seed,
                             **piece.row()})
            for index in range(self.trial_budget(arm)):
                if (trial := self.folder.read_piece(self.folder.trial_path(arm.label, index))) is not None:
                    trials.append({"variant": arm.variant.name, **grid, "trial": index,
                                   **{f"tried {k}": v for k, v in trial.params.items()}, **trial.row()})
        for name, rows in ((RUNS_TABLE, runs), (TRIALS_TABLE, trials)):
            if rows:
                self.folder.write_table(name, rows)
