"""Scenarios on a simulated H200 run in a child process (see ``tests.support.simcuda_scenarios``).

``simulate(name, *args)`` runs one scenario and returns its JSON result; results are kept for
the session, so the tests that read one scenario share one child. The child of a CPU-only torch
build starts with the CUDA shim preloaded (``tests.support.cuda_shim``, built on first use).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import cuda_shim
from tests.support.simcuda_scenarios import RESULT_PREFIX

REPO = Path(__file__).resolve().parents[2]
_results: dict[tuple[str, ...], dict] = {}


def run_scenario(*words: str, timeout: int = 900) -> dict:
    """The JSON result of ``python -m tests.support.simcuda_scenarios WORDS`` in a simulated-CUDA child."""
    if words in _results:
        return _results[words]
    env = {**os.environ, **cuda_shim.preload_env(), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "tests.support.simcuda_scenarios", *words], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        pytest.fail(f"scenario {' '.join(words)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    _results[words] = json.loads(lines[-1][len(RESULT_PREFIX):])
    return _results[words]


@pytest.fixture(scope="session")
def simulate() -> Callable[..., dict]:
    return run_scenario


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in this folder is a ``simcuda`` test."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.simcuda)
