"""A real local Ray on the CPU: a sweep writes and ranks its records, resumes without redoing
anything, survives killed workers, and tunes every variant with the same budget."""
from __future__ import annotations

import json
import os
import signal

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("optuna")

from speedrun.results.leaderboard import CONCURRENT_NOTE, build_leaderboard, load_records  # noqa: E402
from speedrun.sweeps.pool import RayOptions  # noqa: E402
from speedrun.sweeps.spec import parse_spec  # noqa: E402
from speedrun.sweeps.sweep import SweepInterrupted, SweepOptions, run_sweep  # noqa: E402
from tests.support.synthetic import make_synthetic  # noqa: E402

# A tiny classic ResNet-9 on 256 synthetic images: about a second a run on one CPU.
BASE = {"recipe": "classic", "epochs": 1, "width": 0.125, "batch-size": 64, "no-compile": True, "target": 0.2}
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


def sweep(spec: dict, out, data, *, retries: int = 1, on_start=None, log=None):
    lines: list[str] = []
    report = run_sweep(parse_spec(spec, source="test.toml"), SweepOptions(str(out), RayOptions(retries=retries)),
                       data=data, on_start=on_start, log=log or lines.append)
    return report, lines


def test_a_sweep_stopped_by_ctrl_c_keeps_its_runs_resumes_ranks_and_a_third_start_runs_nothing(
        local_ray, data, tmp_path):
    spec = {"seeds": 2, "baseline": "step", "base": BASE, "variants": TWO_POLICIES}
    handed_out = []

    def interrupt_at_the_third(job, _worker):
        handed_out.append(job.key)
        if len(handed_out) == 3:       # the first run has landed, the second is running
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted, match="every finished run is kept"):
        sweep(spec, tmp_path, data, on_start=interrupt_at_the_third)
    kept = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "runs").rglob("*.run.json"))
    assert len(kept) == 1 and kept[0].startswith("runs/step/seed-"), "the run that landed, and only it"
    assert not json.loads((tmp_path / "step.json").read_text())["complete"], "a variant short of seeds says so"

    report, lines = sweep(spec, tmp_path, data)
    assert report.ran == 3 and report.skipped == 1 and not report.failed and report.concurrent_times
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["one-cycle.json", "step.json"]
    assert sorted(p.name for p in (tmp_path / "runs" / "step").iterdir()) == ["seed-0.run.json", "seed-1.run.json"]
    step = json.loads((tmp_path / "step.json").read_text())
    assert step["complete"] and [r["seed"] for r in step["runs"]] == [0, 1] and step["summary"]["runs"] == 2
    assert step["sweep"]["concurrent_times"] and step["schedule"]["name"] == "step_lr"
    assert any("0 left" in line for line in lines), "progress says what is left"

    records, problems = load_records([tmp_path])
    assert not problems and len(records) == 2, "the leaderboard reads the merged records, not the run pieces"
    entries = [e for g in build_leaderboard(records) for e in g.entries]
    assert {e.schedule for e in entries} == {"step_lr", "one_cycle_lr"}
    assert all(e.rank is None and e.note == CONCURRENT_NOTE for e in entries), "CPU times rank nothing"

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.run.json")}
    again, lines = sweep(spec, tmp_path, data)
    assert again.ran == 0 and again.skipped == 4
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.run.json")} == before
    assert any("4 run(s) already in" in line for line in lines)


def test_a_killed_worker_is_retried_and_a_run_killed_every_time_is_recorded_failed(local_ray, data, tmp_path):
    kills: dict[str, int] = {}

    def kill(job, worker):
        # step/seed-0 dies once (the retry finishes it); one-cycle/seed-0 dies on every try.
        if job.key == "one-cycle/seed-0" or (job.key == "step/seed-0" and job.attempts == 1):
            kills[job.key] = kills.get(job.key, 0) + 1
            os.kill(worker["pid"], signal.SIGKILL)

    spec = {"seeds": 2, "base": BASE, "variants": TWO_POLICIES}
    report, _ = sweep(spec, tmp_path, data, retries=1, on_start=kill)
    assert kills == {"step/seed-0": 1, "one-cycle/seed-0": 2}
    assert list(report.failed) == ["one-cycle/seed-0"] and "worker died 2 time(s)" in report.failed["one-cycle/seed-0"]
    step = json.loads((tmp_path / "step.json").read_text())
    assert [r["status"] for r in step["runs"]] == ["ok", "ok"], "the retried run finished"
    cycle = json.loads((tmp_path / "one-cycle.json").read_text())
    assert [(r["seed"], r["status"]) for r in cycle["runs"]] == [(0, "failed"), (1, "ok")], "the rest went on"
    assert cycle["complete"] and "worker died" in cycle["runs"][0]["error"]

    again, _ = sweep(spec, tmp_path, data)        # a second start tries the failed run again
    assert again.ran == 1 and again.skipped == 3 and not again.failed
    assert [r["status"] for r in json.loads((tmp_path / "one-cycle.json").read_text())["runs"]] == ["ok", "ok"]


def test_tuning_gives_each_variant_the_same_trials_then_runs_the_best_with_the_seeds(local_ray, data, tmp_path):
    spec = {"seeds": 1, "base": BASE, "tune": {"trials": 2, "seed": 7},
            "variants": {"one-cycle": {"schedule": "one_cycle_lr",
                                       "search": {"max-lr": {"low": 0.05, "high": 1.0, "log": True}}},
                         "cosine": {"schedule": "cosine_annealing_lr",
                                    "search": {"base-lr": {"low": 0.05, "high": 1.0, "log": True}}}}}
    report, _ = sweep(spec, tmp_path, data)
    assert {label: len(t.trials) for label, t in report.tuned.items()} == {"one-cycle": 2, "cosine": 2}
    assert sorted(p.name for p in (tmp_path / "tune" / "cosine").iterdir()) == ["trial-0.run.json", "trial-1.run.json"]
    for label, flag in (("one-cycle", "--max-lr"), ("cosine", "--base-lr")):
        best = report.tuned[label].best
        assert best is not None and 0.05 <= best.params[flag[2:]] <= 1.0
        assert best.value == max(t.value for t in report.tuned[label].trials if t.value is not None)
        record = json.loads((tmp_path / f"{label}.json").read_text())
        flags = record["runs"] and json.loads((tmp_path / "runs" / label / "seed-0.run.json").read_text())["sweep"]["flags"]
        assert flags[-2:] == [flag, str(best.params[flag[2:]])], "the seeded run trains the winner"
        trial = json.loads((tmp_path / "tune" / label / "trial-0.run.json").read_text())
        assert trial["runs"][0]["seed"] == 7, "trials train with the tuning seed, not the sweep's"
    again, _ = sweep(spec, tmp_path, data)
    assert again.ran == 0 and {k: v.best for k, v in again.tuned.items()} == {k: v.best for k, v in report.tuned.items()}
