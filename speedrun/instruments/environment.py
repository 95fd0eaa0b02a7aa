"""What a result ran on: software versions, GPU, driver and the code's git commit."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path

import numpy as np
import torch

from speedrun import __version__
from speedrun.errors import SpeedrunError

_REPO = Path(__file__).resolve().parents[2]   # speedrun/instruments/environment.py -> the checkout


def git_state(repo: Path = _REPO) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding this package; (None, None) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def describe_environment(device: torch.device, driver: str | None = None) -> dict:
    """JSON-ready description of the machine and software for a record."""
    commit, dirty = git_state()
    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
        "driver": driver,
        "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
        "device": device.type,
        "cpu": platform.processor() or platform.machine(),
        "hostname": socket.gethostname(),
        "git_commit": commit,
        "git_dirty": dirty,
        "speedrun": __version__,
        "numpy": np.__version__,
        # The same seed gives other results under another thread count (reduction order).
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def pick_device(name: str | None) -> torch.device:
    """``name`` if given (checked: it must exist here), else CUDA when present, else CPU."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SpeedrunError(f"--device {name!r} is not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpeedrunError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SpeedrunError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise SpeedrunError(f"--device {name}: speedrun runs on cpu or cuda (its timing, compilation and "
                            f"telemetry are written for those); use --device cpu or cuda")
    return device
