"""The GPU plan (scripts/gpu_session.sh), checked on the CPU before any lease: syntax, `step`'s
refusal of anything but a program, the budget rule that keeps one call inside its limit, and a dry
run of every step at tiny sizes from a clean copy of the tree with nothing of the project on PATH,
as the GPU machine runs it (there the project is not installed: no `speedrun` console script)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest

from speedrun.results.records import read_record
from tests.support.gpu_plan import (
    NEVER,
    PLAN_PATH,
    REPO,
    STEPS,
    CleanCopy,
    make_bare_path,
    make_clean_copy,
    step_outputs,
    summary_of,
)

PLAN = REPO / PLAN_PATH
# Steps that need CUDA: on the CPU they must refuse in one line, exit 2, saying why (an unknown flag
# also exits 2, and must not pass for this refusal).
NEEDS_CUDA = {"anchor", "anchor-muon", "anchor-record", "anchor-cuda-graph", "anchor-autotune", "anchor-25", "anchor-fp16"}
CUDA_REFUSAL = "needs a CUDA GPU"


def run_plan(tmp_path: Path, plan: str, timeout: int, cwd: Path = REPO, path: str | None = None,
             **env: str) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path / "out"
    environment = {**os.environ, "OUT": str(out), "DRY_RUN": "1", **env}
    if path is not None:
        environment["PATH"] = path
        for inherited in ("PYTHON", "PYTHONPATH"):
            environment.pop(inherited, None)
    result = subprocess.run(["bash", str(PLAN_PATH), plan], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env=environment)
    return result, (out / "session.log").read_text()


def check_every_step(log: str, plan: str) -> None:
    """Every step of ``plan`` ran to its expected exit: 0, or for a step that needs CUDA, 2 with the
    one-line refusal. A command the machine could not run (127, "not found") always fails."""
    summary, outputs = summary_of(log), step_outputs(log)
    assert list(summary) == list(STEPS[plan]) == list(outputs), (summary, list(outputs))
    wrong = []
    for name in STEPS[plan]:
        rc, text = outputs[name]
        assert summary[name] == rc, f"{name}: the summary says {summary[name]}, the step said {rc}"
        if name in NEEDS_CUDA:
            ok, expected = rc == "2" and CUDA_REFUSAL in text, f"exit 2 and '{CUDA_REFUSAL}'"
        else:
            ok, expected = rc == "0", "exit 0"
        if not ok:
            wrong.append(f"step {name}: exit {rc}, expected {expected}; it said:\n{text[-1500:]}")
    assert not wrong, "\n\n".join(wrong)
    for sign in NEVER:
        assert sign not in log, f"'{sign}' in the log: a step's command could not run"


# --- the script on its own ------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["gpu_session.sh", "prepare_gpu_session.sh"])
def test_the_scripts_parse(script):
    subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)


def test_an_unknown_plan_is_refused():
    result = subprocess.run(["bash", str(PLAN), "third"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr


def test_an_unknown_dry_run_device_is_refused_before_any_step(tmp_path):
    result = subprocess.run(["bash", str(PLAN), "first"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "OUT": str(tmp_path / "out"), "DRY_RUN": "1", "DRY_RUN_DEVICE": "gpu"})
    said = result.stdout + result.stderr               # the plan logs both to session.log and stdout
    assert result.returncode == 2 and "DRY_RUN_DEVICE must be cpu or cuda, not 'gpu'" in said
    assert "== step" not in said


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory) -> str:
    """PATH as on the GPU machine: a python3 and the system's programs, no `speedrun` script."""
    return make_bare_path(tmp_path_factory.mktemp("bin"))


def run_steps(script: str, path: str, cwd: Path) -> subprocess.CompletedProcess:
    """Source the plan (which then defines `step` and runs nothing), run ``script``, print the summary."""
    body = f'source "{PLAN}"\ndeadline=$((SECONDS + 60))\n{script}\necho "== summary: ${{summary[*]}}"\n'
    return subprocess.run(["bash", "-c", body], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": path})


def test_step_refuses_a_command_that_is_not_a_program(bare_path, tmp_path):
    """timeout runs only programs (a shell function under it exits 127): `step` refuses one in one line."""
    result = run_steps("""
        speedrun() { python3 -m speedrun "$@"; }
        step function 5 1 speedrun --help
        step env-function 5 1 env SOME_SETTING=1 speedrun --help
        step builtin 5 1 declare -p
        step missing 5 1 no-such-program-here --help
        step program 5 1 true
        step env-program 5 1 env SOME_SETTING=1 python3 -c "import os; assert os.environ['SOME_SETTING'] == '1'"
        step failing 5 1 false
        step slow 1 1 sleep 30
    """, bare_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary_of(result.stdout) == {"function": "127", "env-function": "127", "builtin": "127",
                                         "missing": "127", "program": "0", "env-program": "0", "failing": "1",
                                         "slow": "124"}
    refusals = [line for line in result.stdout.splitlines() if "not a program" in line]
    assert [line.split()[2] for line in refusals] == ["function:", "env-function:", "builtin:", "missing:"]
    assert "up to" not in "".join(line for line in result.stdout.splitlines()
                                  if line.startswith(("== step function", "== step builtin")))
    assert "(timed out)" in result.stdout


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
                    reason="SIGINT is ignored here, and so in every child: only the kill can stop a step")
def test_a_step_at_its_limit_is_interrupted_first_so_it_can_say_what_it_finished(bare_path, tmp_path):
    result = run_steps("""
        step interrupted 1 1 python3 -c 'import time
try:
    time.sleep(30)
except KeyboardInterrupt:
    print("interrupted, summary printed")'
    """, bare_path, tmp_path)
    assert "interrupted, summary printed" in result.stdout
    assert summary_of(result.stdout) == {"interrupted": "124"}


# --- a dry run from a clean copy, as the GPU machine runs it ---------------------------------------


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory, bare_path) -> CleanCopy:
    """The working tree as the device gets it: tracked and untracked-not-ignored files (uncommitted
    changes included), no install, no ignored folders, nothing of the project on PATH."""
    return make_clean_copy(tmp_path_factory.mktemp("clean-copy"), bare_path)


@pytest.mark.parametrize("plan", ["first", "second"])
def test_steps_that_do_not_fit_the_budget_are_skipped_and_said_so(clean_copy, tmp_path, plan, real_cifar10):
    result, log = run_plan(tmp_path, plan, timeout=120, cwd=clean_copy.root, path=clean_copy.path, BUDGET_S="8",
                           DATA=str(real_cifar10.origin))
    assert result.returncode == 0, result.stderr
    skipped = [line for line in log.splitlines() if line.startswith("== step") and "skipped" in line]
    assert skipped and all("of the plan left" in line for line in skipped)
    assert {line.split()[2].rstrip(":") for line in skipped} == set(STEPS[plan])
    assert summary_of(log) == dict.fromkeys(STEPS[plan], "skipped")
    assert f"== plan {plan} done" in log


def dry_run_from_the_copy(copy: CleanCopy, tmp_path: Path, plan: str, data: str) -> str:
    result, log = run_plan(tmp_path, plan, timeout=600, cwd=copy.root, path=copy.path, BUDGET_S="3000", DATA=data)
    assert result.returncode == 0, result.stderr
    assert f"speedrun from {copy.root}" in log, "the plan's versions step must import the copy's speedrun"
    check_every_step(log, plan)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 8 and "session.log" in files, files       # at most 8 files come back
    return log


def test_a_dry_run_of_the_first_plan_from_a_clean_copy(clean_copy, tmp_path, real_cifar10):
    """~35 s on 2 busy cores: every step to its expected exit, complete records, at most 8 files."""
    dry_run_from_the_copy(clean_copy, tmp_path, "first", str(real_cifar10.origin))
    out = tmp_path / "out"
    curve = read_record(out / "fast94-curve.json")
    assert curve["complete"] is True and curve["summary"]["completed"] == curve["runs_planned"] == 2
    assert all(e["test_acc"] is not None for run in curve["runs"] for e in run["epochs"])   # every epoch evaluated
    assert "wall time" in (out / "profile-fast94.md").read_text()


@pytest.mark.slow
def test_a_dry_run_of_the_second_plan_from_a_clean_copy(clean_copy, tmp_path, real_cifar10):
    """~100 s on 2 cores (six schedule policies at 24 tiny epochs)."""
    log = dry_run_from_the_copy(clean_copy, tmp_path, "second", str(real_cifar10.origin))
    out = tmp_path / "out"
    assert re.search(r"== step gates: up to \d+s: env \S+ SPEEDRUN_TEST_CIFAR10=/", log), \
        "the gates must be given the decoded data: ../shared does not travel"
    classic = read_record(out / "classic.json")
    assert classic["complete"] is True and classic["summary"]["completed"] == 2
    with tarfile.open(out / "policies.tar.gz") as bundle:
        assert len([m for m in bundle.getnames() if m.endswith(".json")]) >= 6


def test_the_real_data_can_be_named_where_the_shared_folder_is_not(clean_copy, real_cifar10):
    """In the copy ../shared is absent: the tests that need real data skip, unless the decoded copy is
    named in $SPEEDRUN_TEST_CIFAR10 (as the plan's gates step does on the GPU machine)."""
    test = "tests/data/test_cifar10.py::test_real_data_has_cifar10s_counts_classes_and_first_labels"
    command = ["python3", "-m", "pytest", test, "-q", "-rs", "-p", "no:cacheprovider"]
    environment = {k: v for k, v in os.environ.items() if k != "SPEEDRUN_TEST_CIFAR10"}
    environment["PATH"] = clean_copy.path
    if (clean_copy.root.parent / "shared" / "data" / "cifar10" / "unpack.py").is_file():
        pytest.skip("a shared folder beside the copy: nothing to show")
    plain = subprocess.run(command, cwd=clean_copy.root, capture_output=True, text=True, timeout=300, env=environment)
    assert "1 skipped" in plain.stdout and "offline CIFAR-10 not found" in plain.stdout, plain.stdout[-2000:]
    named = subprocess.run(command, cwd=clean_copy.root, capture_output=True, text=True, timeout=300,
                           env={**environment, "SPEEDRUN_TEST_CIFAR10": str(real_cifar10.origin)})
    assert named.returncode == 0 and "1 passed" in named.stdout, named.stdout[-2000:]
    missing = subprocess.run(command, cwd=clean_copy.root, capture_output=True, text=True, timeout=300,
                             env={**environment, "SPEEDRUN_TEST_CIFAR10": str(clean_copy.root / "nothing.npz")})
    assert missing.returncode != 0 and "SPEEDRUN_TEST_CIFAR10" in missing.stdout, missing.stdout[-2000:]
