"""The GPU plan (scripts/gpu_session.sh), checked on the CPU before any lease: syntax, the budget
rule that keeps one call inside its limit, and a dry run of every step at tiny sizes."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from speedrun.results.records import read_record

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "scripts" / "gpu_session.sh"
FIRST_STEPS = ("anchor", "anchor-muon", "gpu-tests", "curve", "profile", "classic")


def run_plan(tmp_path: Path, plan: str, timeout: int, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(PLAN), plan], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "OUT": str(out), "DRY_RUN": "1", **env})
    return result, (out / "session.log").read_text()


@pytest.mark.parametrize("script", ["gpu_session.sh", "prepare_gpu_session.sh"])
def test_the_scripts_parse(script):
    subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)


def test_an_unknown_plan_is_refused():
    result = subprocess.run(["bash", str(PLAN), "third"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr


@pytest.mark.parametrize("plan", ["first", "second"])
def test_steps_that_do_not_fit_the_budget_are_skipped_and_said_so(tmp_path, plan, real_cifar10):
    result, log = run_plan(tmp_path, plan, timeout=120, BUDGET_S="8", DATA=str(real_cifar10.origin))
    assert result.returncode == 0, result.stderr
    skipped = [line for line in log.splitlines() if "skipped" in line]
    assert skipped and all("of the plan left" in line for line in skipped)
    if plan == "first":
        assert {line.split()[2].rstrip(":") for line in skipped} >= set(FIRST_STEPS)
    assert f"== plan {plan} done" in log


@pytest.mark.slow
def test_a_dry_run_of_the_first_plan_leaves_complete_records_and_at_most_seven_files(tmp_path, real_cifar10):
    result, log = run_plan(tmp_path, "first", timeout=900, DATA=str(real_cifar10.origin))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 7 and "session.log" in files
    for step in FIRST_STEPS:
        assert f"== step {step}: exit" in log, f"step {step} did not run"
    assert "needs a CUDA GPU" in log             # the anchor refuses the CPU in one line; the plan goes on
    for name in ("fast94-curve.json", "classic.json"):
        record = read_record(tmp_path / "out" / name)
        assert record["complete"] is True and record["summary"]["completed"] == record["runs_planned"] == 2
    curve = read_record(tmp_path / "out" / "fast94-curve.json")
    assert all(e["test_acc"] is not None for run in curve["runs"] for e in run["epochs"])   # every epoch evaluated
    assert "wall time" in (tmp_path / "out" / "profile-fast94.md").read_text()
    json.dumps(curve)
