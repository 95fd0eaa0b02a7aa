"""The GPU plan's first dry run on a simulated H200, from a clean copy of the tree: every step's CUDA
path end to end before a lease, the anchors included (on the CPU they can only refuse the device).

``DRY_RUN_DEVICE=cuda`` gives the steps ``--device cuda`` and ``PYTHON`` is the launcher of
:mod:`tests.support.simcuda_python`: each ``-m speedrun`` step runs on fake CUDA tensors with the
shim preloaded and airbench beside it; anything else (the versions probe, pytest) runs on the real
interpreter. ``--no-compile`` stays: compiled code cannot run on fake tensors.

The ``gpu-tests`` step is not simulated: its pytest runs on the real interpreter, where CUDA is
absent, so the suite's one rule skips every ``gpu`` test it selects. That is exit 0 (tests
collected, all skipped); exit 5 (none collected) would mean its selection matches no test, so the
GPU machine would run none, and fails here like any other exit.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from speedrun.results.records import read_record
from tests.support.gpu_plan import NEVER, PLAN_PATH, STEPS, CleanCopy, make_bare_path, make_clean_copy, step_outputs, summary_of
from tests.support.simcuda_python import REPORTS_ENV, write_wrapper
from tests.support.simcuda_session import airbench_installed

# What each speedrun step of the first plan writes (a record, or for the profile its table).
RECORDS = {"anchor": "anchor.json", "anchor-muon": "anchor-muon.json", "anchor-record": "anchor-record.json",
           "anchor-cuda-graph": "anchor-cuda-graph.json",
           "anchor-autotune": "anchor-autotune.json", "curve": "fast94-curve.json"}
PROFILE = {"profile": "profile-fast94.md"}
NOT_SPEEDRUN = {"versions", "gpu-tests"}
RUNS = 2                                      # every step's runs in a dry run
AIRBENCH_STEPS = 10                           # --train-subset 1024: one batch of 1024 an epoch, 9.9 epochs
OURS_READS = {"training/trainer.py:read_epoch", "bench/harness.py:schedule_record"}


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory) -> CleanCopy:
    return make_clean_copy(tmp_path_factory.mktemp("clean-copy"), make_bare_path(tmp_path_factory.mktemp("bin")))


def simulated_dry_run(copy: CleanCopy, tmp_path: Path, data: str) -> tuple[str, Path, dict[str, dict]]:
    """The first plan's dry run on the simulated H200 from ``copy``: its log, its output folder, and the
    launcher's report of each speedrun command, by the file the command wrote."""
    out, reports = tmp_path / "out", tmp_path / "reports"
    bin_dir = tmp_path / "simcuda-bin"
    bin_dir.mkdir()
    python = write_wrapper(bin_dir, launcher=copy.root / "tests" / "support" / "simcuda_python.py")
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_PRELOAD")}
    environment.update({"PATH": copy.path, "OUT": str(out), "DRY_RUN": "1", "DRY_RUN_DEVICE": "cuda", "PYTHON": str(python),
                        "BUDGET_S": "3000", "DATA": data, REPORTS_ENV: str(reports)})
    result = subprocess.run(["bash", str(PLAN_PATH), "first"], cwd=copy.root, capture_output=True, text=True, timeout=1200,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    by_output: dict[str, dict] = {}
    for path in sorted(reports.glob("*.json")) if reports.is_dir() else []:
        report = json.loads(path.read_text())
        argv = report["argv"]
        written = next(argv[i + 1] for i, a in enumerate(argv) if a in ("--out", "--markdown"))
        by_output[Path(written).name] = report
    return (out / "session.log").read_text(), out, by_output


@pytest.mark.slow
@pytest.mark.skipif(not airbench_installed(), reason="airbench is not installed, so the anchor steps cannot run: "
                                                      "python3 -m pip install --no-deps airbench==0.1.8 (the README's test command does)")
def test_a_dry_run_of_the_first_plan_on_a_simulated_h200(clean_copy, tmp_path, real_cifar10):
    """~2.5 min on 2 busy cores: every step exits 0, every record is written and complete, and each
    speedrun command read the device only where the rule allows."""
    log, out, reports = simulated_dry_run(clean_copy, tmp_path, str(real_cifar10.origin))
    assert "dry run 1 on cuda" in log
    assert f"speedrun from {clean_copy.root}" in log, "the plan's versions step must import the copy's speedrun"
    summary, outputs = summary_of(log), step_outputs(log)
    assert list(summary) == list(STEPS["first"]) == list(outputs), (summary, list(outputs))
    wrong = [f"step {name}: exit {rc}, expected 0; it said:\n{text[-2500:]}" for name, (rc, text) in outputs.items() if rc != "0"]
    assert not wrong, "\n\n".join(wrong)
    for sign in NEVER:
        assert sign not in log, f"'{sign}' in the log: a step's command could not run"
    assert set(RECORDS) | set(PROFILE) | NOT_SPEEDRUN == set(STEPS["first"])

    gpu_tests = outputs["gpu-tests"][1]
    assert " skipped" in gpu_tests and "needs a CUDA GPU" in gpu_tests and " passed" not in gpu_tests

    for step, name in RECORDS.items():
        assert "--device cuda" in outputs[step][1], f"{step} did not run on --device cuda"
        record = read_record(out / name)
        assert record["complete"] is True and record["runs_planned"] == RUNS, step
        assert record["environment"]["device"] == "cuda" and "H200" in record["environment"]["gpu_name"], step
        sides = record["sides"] if record["kind"] == "anchor" else [record]
        assert [side["summary"]["completed"] for side in sides] == [RUNS] * len(sides), step
    train = {step: read_record(out / RECORDS[step])["config"]["recipe"]["train"] for step in ("anchor-cuda-graph", "anchor-autotune")}
    assert train["anchor-cuda-graph"]["cuda_graph"] is True
    assert train["anchor-autotune"]["compile_mode"] == "max-autotune-no-cudagraphs"
    curve = read_record(out / RECORDS["curve"])
    assert all(e["test_acc"] is not None for run in curve["runs"] for e in run["epochs"])      # every epoch evaluated
    assert re.search(r"on cuda(:0)?: wall time", (out / PROFILE["profile"]).read_text())

    assert set(reports) == set(RECORDS.values()) | set(PROFILE.values()), sorted(reports)
    for name, report in reports.items():
        assert report["exit"] == 0 and report["engine_runs_cuda"], (name, report)
        assert set(report["host_reads"]) <= OURS_READS, (name, report["host_reads"])
    for step in ("anchor", "anchor-muon", "anchor-record", "anchor-cuda-graph", "anchor-autotune"):
        record, airbench = read_record(out / RECORDS[step]), reports[RECORDS[step]]["airbench"]
        ours = record["sides"][0]["runs"]
        assert reports[RECORDS[step]]["host_reads"]["training/trainer.py:read_epoch"] == sum(len(r["epochs"]) for r in ours)
        assert airbench["calls"] == airbench["returned"] == {"train94": 1 + RUNS, "evaluate": 1 + RUNS}, step
        assert airbench["host_reads"] == {"airbench/utils.py:evaluate": 1 + RUNS}, step
        assert airbench["batches"] == 1 + RUNS * AIRBENCH_STEPS, step          # warmup94 stops after its first step
