"""``speedrun sweep`` as a person runs it, in its own process, on a real local Ray or a cluster
started with ``ray start --head``: Ctrl-C and a killed driver keep every finished run and a second
start does the rest; Ctrl-C at any moment of start-up leaves no Ray process behind and claims
nothing it did not keep; ``--address auto`` and ``ray://`` (the client) join a running cluster.
Every Ray process of a test lives under its own ``RAY_TMPDIR`` and is found by it."""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.tune")

from tests.support.ray_processes import kill_all, ray_pids, ray_root, wait_gone

SPEC = """seeds = {seeds}
[base]
recipe = "classic"
epochs = 2
width = 0.125
batch-size = 64
no-compile = true
target = 0.2
data-dir = "{data}"
train-subset = 512
test-subset = 256
[variants.step]
schedule = "step_lr"
base-lr = 0.1
step-size = 1
[variants.one-cycle]
schedule = "one_cycle_lr"
max-lr = 0.4
"""


@pytest.fixture
def spec(tmp_path, real_cifar10):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(seeds=3, data=real_cifar10.origin))
    return path


@pytest.fixture
def root():
    root = ray_root()
    yield root
    kill_all(root)


class Sweep:
    """``python -m speedrun sweep`` in its own process; its output lines collected as they come."""

    def __init__(self, spec: Path, out: Path, root: Path, *extra: str) -> None:
        env = {**os.environ, "RAY_TMPDIR": str(root), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "speedrun", "sweep", str(spec), "--out", str(out), "--progress-every", "1", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            # Ctrl-C as a terminal delivers it, even where these tests run with SIGINT ignored (a shell's
            # background job inherits SIG_IGN, and Python then installs no KeyboardInterrupt handler).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")),
                                        daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"ended before {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{self.output}"
            time.sleep(0.1)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


def pieces(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.run.json")} if (out / "runs").exists() else {}


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_stopped_driver_keeps_every_finished_run_and_the_next_start_does_only_the_rest(tmp_path, root, stop, real_cifar10):
    # Twelve runs of under a second each: when the first lands, enough are left that the stop lands mid-sweep.
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(seeds=6, data=real_cifar10.origin))
    out = tmp_path / "out"
    first = Sweep(spec, out, root, "--num-cpus", "2")
    first.wait_for(": ok, test accuracy")
    first.process.send_signal(stop)
    code = first.finish()
    kept = pieces(out)
    assert kept, first.output
    if stop == signal.SIGINT:
        assert code == 130 and f"{len(kept)} finished run(s) and trial(s) are kept in" in first.output, first.output
        assert wait_gone(root) == [], "Ctrl-C leaves no Ray process behind"
    else:
        kill_all(root)            # a killed driver cannot stop its Ray: what a person then does (ray stop)

    second = Sweep(spec, out, root, "--num-cpus", "2")
    assert second.finish() == 0, second.output
    assert f"{len(kept)} run(s) already in {out}, skipped; {12 - len(kept)} to run" in second.output
    assert {p: t for p, t in pieces(out).items() if p in kept} == kept, "a kept run is never run or written again"
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}
    assert wait_gone(root) == [], "a sweep that ends stops the Ray it started"


@pytest.mark.parametrize("delay", [0.05, 0.8, 1.6, 2.4, 3.2, 4.5, 6.0])
def test_ctrl_c_at_any_moment_of_start_up_leaves_no_ray_process_and_claims_nothing_false(spec, tmp_path, root, delay):
    out = tmp_path / "out"
    sweep = Sweep(spec, out, root, "--num-cpus", "2")
    time.sleep(delay)
    sweep.process.send_signal(signal.SIGINT)
    code = sweep.finish(120)
    # 0: it finished first; -2: ended by the signal itself, which a shell shows as 130 too (CPython does so
    # when the interrupt cut through an extension's start-up code, although speedrun caught it).
    assert code in (0, 130, -signal.SIGINT), sweep.output
    assert "Traceback" not in sweep.output and "Segmentation" not in sweep.output, sweep.output
    if code == 130 and not pieces(out):
        assert "kept in" not in sweep.output, "no false claim of kept runs"
    assert wait_gone(root) == [], f"Ray processes left after Ctrl-C at {delay}s:\n{sweep.output}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster, as ``ray start --head`` makes one, with its client server."""
    root = ray_root()
    client_port = _free_port()
    env = {**os.environ, "RAY_TMPDIR": str(root)}
    started = subprocess.run(["ray", "start", "--head", "--num-cpus", "2", "--port", str(_free_port()),
                              "--ray-client-server-port", str(client_port), "--include-dashboard", "false",
                              "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        kill_all(root)
        pytest.fail(f"ray start failed: {started.stderr[-2000:]}")
    yield root, client_port
    kill_all(root)


@pytest.mark.parametrize("how", ["auto", "client"])
def test_a_sweep_joins_a_running_cluster_and_leaves_it_running(spec, tmp_path, cluster, how, real_cifar10):
    root, client_port = cluster
    spec.write_text(SPEC.format(seeds=1, data=real_cifar10.origin))
    address = "auto" if how == "auto" else f"ray://127.0.0.1:{client_port}"
    before = set(ray_pids(root))
    sweep = Sweep(spec, tmp_path / "out", root, "--address", address)
    assert sweep.finish() == 0, sweep.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == ["one-cycle.json", "step.json", "sweep.json"]
    assert len(list(csv.DictReader((tmp_path / "out" / "runs.csv").open()))) == 2
    assert "variant" in sweep.output and "one-cycle" in sweep.output, "the leaderboard names the variants"
    assert before <= set(ray_pids(root)), "the cluster the sweep joined is still running"
