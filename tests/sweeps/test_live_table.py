"""The live table's estimate of the time left: the running runs' pace until one finishes, then the
finished runs' mean duration, spread over the workers."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("ray.tune")

from speedrun.sweeps import callbacks
from speedrun.sweeps.callbacks import Progress


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(callbacks.time, "monotonic", clock)
    return clock


def trial(trial_id: str, run: str):
    return SimpleNamespace(trial_id=trial_id, config={"run": run}, last_result={}, num_failures=0)


def test_the_estimate_starts_from_the_running_pace_and_then_uses_finished_runs(clock):
    landed = []
    table = Progress(landed.append, print, total=6, workers=2, every_s=10,
                     labels={"a/seed-0": ("a", "", "0"), "a/seed-1": ("a", "", "1")})
    a, b = trial("1", "a/seed-0"), trial("2", "a/seed-1")
    table.on_trial_start(0, [], a)
    table.on_trial_start(0, [], b)
    assert table.per_run_s() is None and "left," in table.status_line() and "about" not in table.status_line()
    clock.now += 10          # both at epoch 1 of 4 after 10 s: 40 s a run
    table.on_trial_result(0, [], a, {"epoch": 1, "epochs": 4, "accuracy": 0.5})
    table.on_trial_result(0, [], b, {"epoch": 1, "epochs": 4})
    assert table.per_run_s() == pytest.approx(40)
    # 4 left x 40 s + 2 running x 30 s to go, over 2 workers
    assert table.status_line().endswith("about 1m50s left")
    clock.now += 20          # the first finishes after 30 s: runs take 30 s, not 40
    table.on_trial_complete(0, [], a)
    assert [(x.key, x.status) for x in landed] == [("a/seed-0", "stopped")], "no record: it was stopped early"
    assert table.per_run_s() == pytest.approx(30)
    assert "1 done, 1 running, 0 failed, 4 left" in table.status_line()
    rows = table.text().splitlines()
    assert rows[1].split() == ["variant", "grid", "seed", "epoch", "accuracy", "elapsed"]
    assert rows[2].split() == ["a", "-", "1", "1/4", "-", "30s"]
