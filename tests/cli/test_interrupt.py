"""SIGTERM ends a command as Ctrl-C does: one line saying so, and the record kept, marked interrupted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_sigterm_mid_run_is_one_line_and_a_record_marked_interrupted(real_cifar10, tmp_path):
    out = tmp_path / "r.json"
    command = [sys.executable, "-m", "speedrun", "--epochs", "30", "--batch-size", "32", "--width", "0.125",
               "--train-subset", "512", "--test-subset", "64", "--target", "0.99", "--device", "cpu", "--no-compile",
               "--runs", "3", "--data-dir", str(real_cifar10.origin), "--out", str(out)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    for line in proc.stdout:                 # wait until the second run has started
        if line.startswith("run 2/3"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("speedrun: interrupted (SIGTERM); any record written so far is kept "
                                            "and says so")
    assert "Traceback" not in err
    record = json.loads(out.read_text())
    assert record["interrupted"] is True and record["complete"] is False and len(record["runs"]) == 1
