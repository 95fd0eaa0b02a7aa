"""Scratch runs stay out of the committed records: the folder runs write to by default is one git
ignores, and results/ (the curated records) is not."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from speedrun.bench.harness import HarnessOptions
from speedrun.results.records import DEFAULT_RESULTS_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_default_record_folder_is_ignored_by_git_and_results_is_not():
    assert HarnessOptions().out == DEFAULT_RESULTS_DIR != "results"

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert ignored(f"{DEFAULT_RESULTS_DIR}/20261205T000000Z-train-classic.json")
    assert ignored(f"{DEFAULT_RESULTS_DIR}/sweeps/policies/step.json")
    assert not ignored("results/calibration/any-record.json"), "the curated records stay tracked"
