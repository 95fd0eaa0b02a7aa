"""A real local Ray on the CPU: a sweep's folder names every variant and grid cell, a second start
with nothing to do starts no Ray, a killed worker's run is retried (and recorded failed when it
dies every time), a variant's seeds reuse its prepared trainer, and tuning with early stopping
gives every variant the same number of trials."""
from __future__ import annotations

import collections
import csv
import json
import os
import signal

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")
pytest.importorskip("optuna")

from ray.tune import Callback  # noqa: E402

from speedrun.results.leaderboard import CONCURRENT_NOTE, build_leaderboard, load_records  # noqa: E402
from speedrun.results.render import render  # noqa: E402
from speedrun.sweeps import sweep as sweep_module  # noqa: E402
from speedrun.sweeps.execution import RayOptions  # noqa: E402
from speedrun.sweeps.spec import parse_spec  # noqa: E402
from speedrun.sweeps.store import SweepFolder  # noqa: E402
from speedrun.sweeps.summary import summary_markdown  # noqa: E402
from speedrun.sweeps.sweep import SweepOptions, run_sweep  # noqa: E402
from tests.support.synthetic import make_synthetic  # noqa: E402

# A tiny classic ResNet-9 on 256 synthetic images: about a second a run on one CPU.
BASE = {"recipe": "classic", "epochs": 2, "width": 0.125, "batch-size": 64, "no-compile": True, "target": 0.2}
TWO_POLICIES = {"step": {"schedule": "step_lr", "base-lr": 0.1, "step-size": 1},
                "one-cycle": {"schedule": "one_cycle_lr", "max-lr": 0.4}}


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module (a sweep joins a running Ray and leaves it running)."""
    ray.init(num_cpus=2, object_store_memory=96 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False, logging_level="error")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data():
    return make_synthetic(train=256, test=64)


def sweep(spec: dict, out, data, *, callbacks=(), **ray_options):
    lines: list[str] = []
    report = run_sweep(parse_spec(spec, source="test.toml"), SweepOptions(str(out), RayOptions(**ray_options), progress_every_s=0.2),
                       data=data, callbacks=callbacks, log=lines.append)
    return report, lines


def runs_table(out) -> list[dict]:
    with (out / "runs.csv").open() as f:
        return list(csv.DictReader(f))


def test_two_variants_by_two_cells_by_two_seeds_are_named_everywhere_and_a_second_start_starts_no_ray(
        local_ray, data, tmp_path, monkeypatch):
    spec = {"seeds": 2, "base": BASE, "variants": TWO_POLICIES, "grid": {"cutout": [0, 4]}}
    report, lines = sweep(spec, tmp_path, data)
    assert report.ran == 8 and report.trained == 8 and not report.failed and report.concurrent_times

    rows = runs_table(tmp_path)
    assert len(rows) == 8
    assert {(r["variant"], r["grid cutout"], r["seed"]) for r in rows} == {
        (v, c, s) for v in ("step", "one-cycle") for c in ("0", "4") for s in ("0", "1")}
    assert all(r["status"] == "ok" and r["attempts"] == "1" and float(r["accuracy"]) > 0 for r in rows)

    records, problems = load_records([tmp_path])
    assert not problems and len(records) == 4, "the leaderboard reads the merged records, not pieces or Tune's logs"
    table = render(build_leaderboard(records), "table")
    for variant in ("step", "one-cycle"):
        for cell in ("cutout=0", "cutout=4"):
            assert any(variant in line and cell in line for line in table.splitlines()), table
    entries = [e for g in build_leaderboard(records) for e in g.entries]
    assert all(e.rank is None and e.note == CONCURRENT_NOTE for e in entries), "CPU times rank nothing"
    summary = summary_markdown(parse_spec(spec, source="test.toml"), report)
    assert "| # | variant | grid | recipe |" in summary and "| step | cutout=4 |" in summary
    assert "8 run(s) trained, 0 failed" in summary
    assert list((tmp_path / "logs").glob("runs-*/step@cutout=0_seed-0/events.out.tfevents.*")), "TensorBoard curves"
    assert any(line.split()[:6] == ["variant", "grid", "seed", "epoch", "accuracy", "elapsed"]
               for text in lines for line in text.splitlines()[1:2]), "the live table of running runs"
    assert any(" done, " in line and " left, " in line for line in lines)

    def no_ray(*args, **kwargs):
        pytest.fail("Ray was started with nothing to do")
    monkeypatch.setattr(sweep_module, "ray_cluster", no_ray)
    reads: collections.Counter = collections.Counter()
    read_piece = SweepFolder.read_piece
    monkeypatch.setattr(SweepFolder, "read_piece", lambda folder, path: reads.update([path]) or read_piece(folder, path))
    again, lines = sweep(spec, tmp_path, data)
    assert again.ran == 0 and again.skipped == 8 and any("nothing to do" in line for line in lines)
    assert len(reads) == 8 and set(reads.values()) == {1}, "each run file is read once at start-up"

    monkeypatch.undo()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.run.json")}
    more, _ = sweep({**spec, "seeds": 3}, tmp_path, data)           # a third seed: only its 4 runs train
    assert more.ran == 4 and more.skipped == 8 and len(runs_table(tmp_path)) == 12
    assert {p: t for p, t in ((p, p.stat().st_mtime_ns) for p in before)} == before


class KillWorker(Callback):
    """SIGKILLs the worker of the runs named, at their first epoch's report, on the attempts named."""

    def __init__(self, plan: dict[str, int | None]):
        self.plan: dict[str, int | None] = plan
        self.kills: dict[str, int] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run = trial.config["run"]
        first_epoch = run in self.plan and result.get("epoch") == 1 and "record_json" not in result
        if first_epoch and (self.plan[run] is None or trial.num_failures < self.plan[run]):
            self.kills[run] = self.kills.get(run, 0) + 1
            os.kill(result["pid"], signal.SIGKILL)


def test_a_killed_worker_is_retried_and_a_run_killed_every_time_is_recorded_failed(local_ray, data, tmp_path):
    spec = {"seeds": 2, "base": {**BASE, "epochs": 3}, "variants": TWO_POLICIES}
    killer = KillWorker({"step/seed-0": 1, "one-cycle/seed-0": None})     # once; every time
    report, lines = sweep(spec, tmp_path, data, retries=1, callbacks=[killer])
    assert killer.kills == {"step/seed-0": 1, "one-cycle/seed-0": 2}
    assert list(report.failed) == ["one-cycle/seed-0"] and "failed 2 time(s)" in report.failed["one-cycle/seed-0"]
    assert any("step/seed-0: failed" in line and "trying again, attempt 2" in line for line in lines), lines
    step = json.loads((tmp_path / "step.json").read_text())
    assert [r["status"] for r in step["runs"]] == ["ok", "ok"], "the retried run finished"
    retried = json.loads((tmp_path / "runs" / "step" / "seed-0.run.json").read_text())
    assert retried["sweep"]["attempts"] == 2, "the record says it took two attempts"
    cycle = json.loads((tmp_path / "one-cycle.json").read_text())
    assert [(r["seed"], r["status"]) for r in cycle["runs"]] == [(0, "failed"), (1, "ok")], "the rest went on"
    rows = {r["run_id"]: r for r in runs_table(tmp_path)}
    assert rows["step/seed-0"]["attempts"] == "2" and rows["one-cycle/seed-0"]["status"] == "failed"
    assert rows["one-cycle/seed-0"]["attempts"] == "2"

    again, _ = sweep(spec, tmp_path, data)        # a second start tries the failed run again
    assert again.ran == 1 and again.skipped == 3 and not again.failed
    assert [r["status"] for r in json.loads((tmp_path / "one-cycle.json").read_text())["runs"]] == ["ok", "ok"]


def test_the_seeds_of_a_variant_reuse_its_prepared_trainer_on_one_worker(local_ray, data, tmp_path):
    spec = {"seeds": 3, "base": BASE, "variants": {"step": TWO_POLICIES["step"]}}
    sweep(spec, tmp_path, data, max_workers=1)
    runs = [json.loads((tmp_path / "runs" / "step" / f"seed-{s}.run.json").read_text())["sweep"] for s in range(3)]
    assert [r["trainer_reused"] for r in runs] == [False, True, True]
    assert runs[0]["prepare_s"] > 0 and runs[1]["prepare_s"] == runs[2]["prepare_s"] == 0


def test_tuning_with_early_stopping_gives_each_variant_the_same_trials_then_runs_the_best(local_ray, data, tmp_path):
    # Random choices between a good rate and a hopeless one; with tuning seed 1 each variant draws a
    # good one before a hopeless one, which ASHA then stops at its first rung (one trial at a time).
    spec = {"seeds": 1, "base": {**BASE, "epochs": 3, "target": 0.99},
            "tune": {"trials": 4, "seed": 1, "sampler": "random", "early-stop": True, "grace-epochs": 1},
            "variants": {"one-cycle": {"schedule": "one_cycle_lr",
                                       "search": {"max-lr": {"choices": [0.4, 0.00001]}}},
                         "cosine": {"schedule": "cosine_annealing_lr",
                                    "search": {"base-lr": {"choices": [0.2, 0.00001]}}}}}
    report, _ = sweep(spec, tmp_path, data, max_workers=1)
    assert {label: len(t.trials) for label, t in report.tuned.items()} == {"one-cycle": 4, "cosine": 4}
    trials = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert len(trials) == 8 and {t["status"] for t in trials} <= {"ok", "stopped"}
    assert any(t["status"] == "stopped" for t in trials), "ASHA stopped a trailing trial"
    for label, flag in (("one-cycle", "--max-lr"), ("cosine", "--base-lr")):
        best = report.tuned[label].best
        assert best is not None and best.status == "ok"
        assert best.value == max(t.value for t in report.tuned[label].trials if t.status == "ok" and t.value is not None)
        run = json.loads((tmp_path / "runs" / label / "seed-0.run.json").read_text())
        assert run["sweep"]["flags"][-2:] == [flag, str(best.params[flag[2:]])], "the seeded run trains the winner"
        files = [json.loads(p.read_text()) for p in (tmp_path / "tune" / label).iterdir()]
        assert len(files) == 4 and all((f["runs"][0]["seed"] if "runs" in f else f["seed"]) == 1 for f in files), \
            "every trial, finished or stopped, trained with the tuning seed"
    again, _ = sweep(spec, tmp_path, data)
    assert again.ran == 0 and again.trials_ran == 0
    assert {k: v.best for k, v in again.tuned.items()} == {k: v.best for k, v in report.tuned.items()}
