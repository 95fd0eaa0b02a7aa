"""A ``python3`` for the GPU plan's dry run on a simulated H200.

    PYTHON=<wrapper> DRY_RUN=1 DRY_RUN_DEVICE=cuda bash scripts/gpu_session.sh first

Why: the plan (``scripts/gpu_session.sh``) runs every step as ``$PYTHON ...`` and its dry run
checks the steps before a lease; on the CPU the anchor steps can only refuse the device. With
this launcher as ``$PYTHON`` each ``-m speedrun`` step runs on the simulated H200 of
``tests/simcuda`` (fake CUDA tensors, the preloaded CUDA shim, the stand-in torchvision and
pynvml, airbench beside them), so every step, the anchors included, runs its CUDA path end to end:

    <python> tests/support/simcuda_python.py -m speedrun ARGS...  ->  speedrun.cli.main(ARGS), simulated,
                                                                      its exit code kept
    <python> tests/support/simcuda_python.py ANYTHING ELSE        ->  exec <python> ANYTHING ELSE, unchanged
                                                                      (pytest, pip, .data/unpack.py, -c ...)

A ``-m speedrun`` command runs in a second process that starts with the shim preloaded (the first
re-executes itself). Host reads follow the simcuda rule: speedrun's ``.tolist()`` gives counted
zeros (its one read an epoch), any other read of a device tensor raises, airbench's own reads give
0. Each command says what it read in one ``simcuda:`` line on stderr and, where
``$SPEEDRUN_SIMCUDA_REPORTS`` names a folder, in a JSON file there. :func:`write_wrapper` makes the
executable that the plan's ``PYTHON`` names (``step`` runs only programs).
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

STAGE_ENV = "SPEEDRUN_SIMCUDA_STAGE"       # "preloaded" in the second process
SHIM_ENV = "SPEEDRUN_SIMCUDA_SHIM"         # the shim library to preload (built when unset)
REPORTS_ENV = "SPEEDRUN_SIMCUDA_REPORTS"   # a folder for one JSON report per speedrun command
HERE = Path(__file__).resolve()


def main(argv: list[str]) -> int:
    if argv[:2] != ["-m", "speedrun"]:
        os.execv(sys.executable, [sys.executable, *argv])
    if os.environ.get(STAGE_ENV) != "preloaded":
        os.execve(sys.executable, [sys.executable, str(HERE), *argv], {**os.environ, **_preload(), STAGE_ENV: "preloaded"})
    return run_speedrun(argv[2:])


def _preload() -> dict[str, str]:
    """The environment that preloads the CUDA shim (``$SPEEDRUN_SIMCUDA_SHIM``, else built now)."""
    shim = os.environ.get(SHIM_ENV)
    if shim:
        return {"LD_PRELOAD": shim}
    _import_like_dash_m()
    from tests.support import cuda_shim

    return cuda_shim.preload_env()


def _import_like_dash_m() -> None:
    """``sys.path`` as ``python -m`` starts it, from the current folder (the tree the plan runs in),
    then this checkout for ``tests.support``."""
    here = str(HERE.parent)
    sys.path[:] = [p for p in sys.path if p not in (here, "")]
    for folder in (str(HERE.parents[2]), os.getcwd()):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def run_speedrun(args: list[str]) -> int:
    """``speedrun.cli.main(args)`` on the simulated H200, with the report of what it read."""
    os.environ.pop("LD_PRELOAD", None)     # loaded here already; git and compilers must not load it
    os.environ.pop(STAGE_ENV, None)
    _import_like_dash_m()
    import speedrun
    from speedrun.cli import main as speedrun_main
    from tests.support.nvml_standin import make_pynvml
    from tests.support.simcuda import engine_runs_cuda
    from tests.support.simcuda_session import simulated_session

    sys.argv = [str(Path(speedrun.__file__).with_name("__main__.py")), *args]
    report: dict = {"argv": args, "exit": None, "engine_runs_cuda": engine_runs_cuda()}
    session = None
    try:
        with simulated_session(make_pynvml()) as session:
            report["exit"] = speedrun_main(args)
        return report["exit"]
    except BaseException as exc:
        report["exception"] = type(exc).__name__
        raise
    finally:
        if session is not None:
            report.update(session.to_dict())
        _report(report)


def _report(report: dict) -> None:
    print(f"simcuda: exit {report['exit']}, host reads {report.get('host_reads')}, airbench {report.get('airbench')}",
          file=sys.stderr, flush=True)
    folder = os.environ.get(REPORTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"speedrun-{os.getpid()}.json").write_text(json.dumps(report, default=str))


def write_wrapper(bin_dir: Path, launcher: Path = HERE, python: str = sys.executable, name: str = "python-simcuda") -> Path:
    """An executable ``bin_dir/name`` that runs ``launcher`` with ``python`` (the plan's ``PYTHON``:
    ``step`` runs it under ``timeout``, which takes programs only). The shim is built now and named
    in it, so no step pays for the build."""
    from tests.support import cuda_shim

    preload = cuda_shim.preload_env().get("LD_PRELOAD", "")
    wrapper = bin_dir / name
    wrapper.write_text(f"#!/bin/sh\n{SHIM_ENV}={shlex.quote(preload)} exec {shlex.quote(python)} {shlex.quote(str(launcher))} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
