"""The GPU plan (``scripts/gpu_session.sh``) as its dry runs check it: its steps, a clean copy of the
tree to run it from, and its log read back.

Why shared: the plan is dry-run on the CPU (``tests/scripts/test_gpu_plan.py``) and on a simulated
H200 (``tests/simcuda/test_gpu_plan.py``), both from a copy of the working tree as the GPU machine
gets it: tracked and untracked-not-ignored files, no install, nothing of the project on PATH
(there is no ``speedrun`` console script there).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAN_PATH = Path("scripts") / "gpu_session.sh"
STEPS = {
    "first": ("versions", "anchor", "anchor-muon", "anchor-record", "anchor-cuda-graph", "anchor-autotune", "gpu-tests", "curve",
              "profile"),
    "second": ("versions", "gpu-tests-rest", "classic", "anchor-25", "anchor-fp16", "gates", "benchmarks",
               "one-cycle", "one-cycle-swa", "triangular", "sgdr", "multistep", "cosine"),
}
NEVER = ("exit 127", "not found", "not a program")      # a command the machine could not run
STEP_LINE = re.compile(r"^== step (?P<name>\S+): (?:up to|exit (?P<rc>\d+)|(?P<skipped>skipped))")


@dataclass(frozen=True)
class CleanCopy:
    root: Path
    path: str           # PATH with nothing of the project on it


def make_bare_path(bin_dir: Path) -> str:
    """PATH as on the GPU machine: a python3 (linked into ``bin_dir``) and the system's programs, no `speedrun` script."""
    (bin_dir / "python3").symlink_to(sys.executable)
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    assert shutil.which("speedrun", path=path) is None
    return path


def make_clean_copy(root: Path, path: str) -> CleanCopy:
    """The working tree copied into ``root`` as the device gets it: tracked and untracked-not-ignored files
    (uncommitted changes included), no install, no ignored folders. Skips without git."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and the repository's .git to list the working tree")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_symlink():                   # a link travels as a link (speedrun/kernels -> ../kernels)
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).symlink_to(os.readlink(source))
        elif source.is_file():                    # a tracked file deleted in the tree is not there
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    # `import speedrun` must find the copy (cwd first on sys.path), not the editable install.
    found = subprocess.run(["python3", "-c", "import speedrun; print(speedrun.__file__)"], cwd=root, check=True,
                           capture_output=True, text=True, env={**os.environ, "PATH": path}).stdout.strip()
    assert Path(found).is_relative_to(root), f"speedrun imported from {found}, not from the copy {root}"
    kernels = subprocess.run(["python3", "-c", "import speedrun.kernels as k; print(k.__file__)"], cwd=root, check=True,
                             capture_output=True, text=True, env={**os.environ, "PATH": path}).stdout.strip()
    assert Path(kernels).is_relative_to(root), f"speedrun.kernels imported from {kernels}, not from the copy {root}"
    return CleanCopy(root, path)


def summary_of(log: str) -> dict[str, str]:
    """The plan's last line, ``== summary: name=exit ...``, as {name: exit or "skipped"}."""
    lines = [line for line in log.splitlines() if line.startswith("== summary:")]
    assert len(lines) == 1, f"expected one summary line:\n{log[-3000:]}"
    return dict(item.split("=", 1) for item in lines[0].removeprefix("== summary:").split())


def step_outputs(log: str) -> dict[str, tuple[str, str]]:
    """{step: (exit or "skipped", everything it printed, its own lines included)}."""
    steps: dict[str, tuple[str, str]] = {}
    current: list[str] = []
    for line in log.splitlines():
        match = STEP_LINE.match(line)
        if match and not (match["rc"] or match["skipped"]):
            current = [line]
        elif match:
            current.append(line)
            steps[match["name"]] = (match["rc"] or "skipped", "\n".join(current))
            current = []
        else:
            current.append(line)
    return steps
