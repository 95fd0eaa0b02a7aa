"""Inductor's CUDA code for a recipe's compiled graphs, generated without a GPU and compiled to
sm_90 cubins; run in a child process with the CUDA shim preloaded (``tests/simcuda``).

    python -m tests.support.inductor_sm90 RECIPE [--source-only] [--plant graph-break|fallback]

Why: a GPU run compiles the training step (forward and backward) and the evaluation forward
with Inductor, whose CUDA path (Triton kernels, cuDNN/cuBLAS calls, eager fallbacks) never runs
on a CPU. Here the trainer is built on fake ``cuda:0`` tensors with ``compile_model=True``;
Inductor lowers each graph for an H200, and Triton compiles every kernel it writes, with the
``ptxas`` it ships, against a stand-in driver that knows an sm_90 device but cannot load a
binary. Each graph's generated module is kept and its ``call`` never runs.

Prints ``SIMCUDA-RESULT <json>``: per graph, the kernels and their registers and local memory,
the eager fallbacks the generated code calls (``torch.ops.aten.*``) and the library calls
(``extern_kernels.*``); the graphs compiled, graph breaks, and the graphs a second call with the
same shapes compiled (a recompile).
"""
from __future__ import annotations

import os

os.environ.pop("LD_PRELOAD", None)   # loaded here already; g++, ptxas and cuobjdump must not load it

import argparse
import collections
import json
import re
import sys
import tempfile
import traceback
import types
from pathlib import Path
from typing import Any

import torch

RESULT_PREFIX = "SIMCUDA-RESULT "


class GraphNotRun(Exception):
    """Raised by a generated graph's ``call``: the code is compiled, and nothing can run it."""


def prepare_inductor(out: Path) -> None:
    """Inductor and Triton pointed at a simulated H200, compiling everything in this process."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    import triton
    from torch._subclasses.fake_tensor import FakeTensorMode
    from triton.backends.driver import GPUDriver
    from triton.backends.nvidia.driver import CudaDriver, CudaLauncher

    from tests.support.simcuda import H200

    for name, value in {"get_rng_state": lambda *a: torch.zeros(16, dtype=torch.uint8), "set_rng_state": lambda *a: None,
                        "_exchange_device": lambda device: 0, "_maybe_exchange_device": lambda device: 0}.items():
        setattr(torch.cuda, name, value)
    for name, value in {"_cuda_getDevice": lambda: 0, "_cuda_getDeviceCount": lambda: 1, "_cuda_getArchFlags": lambda: "sm_90",
                        "_cuda_getCurrentRawStream": lambda index: 0}.items():
        if not hasattr(torch._C, name):
            setattr(torch._C, name, value)

    class SimulatedCudaDriver(CudaDriver):
        """Triton's CUDA driver without libcuda: an sm_90 device that cannot load a binary."""

        def __init__(self) -> None:
            def refuse(*args: Any) -> None:
                raise RuntimeError("simulated CUDA: a cubin cannot be loaded")
            self.utils = types.SimpleNamespace(
                get_device_properties=lambda device: {"max_shared_mem": H200.shared_memory_per_block_optin,
                                                      "multiprocessor_count": H200.multi_processor_count,
                                                      "max_num_regs": H200.regs_per_multiprocessor, "warpSize": 32,
                                                      "sm_clock_rate": 1_980_000, "mem_clock_rate": 3_201_000,
                                                      "mem_bus_width": 6144},
                load_binary=refuse)
            self.launcher_cls = CudaLauncher
            GPUDriver.__init__(self)

        def get_current_target(self) -> Any:
            from triton.backends.compiler import GPUTarget
            return GPUTarget("cuda", 90, 32)

    # Dynamo's CUDA interface bound torch.cuda's functions when torch was imported.
    from torch._dynamo.device_interface import CudaInterface

    from tests.support.simcuda import SimulatedStream
    for name, value in {"get_device_properties": lambda *a: H200, "current_device": lambda: 0, "device_count": lambda: 1,
                        "synchronize": lambda *a: None, "exchange_device": lambda device: 0,
                        "maybe_exchange_device": lambda device: 0, "is_bf16_supported": lambda *a, **k: True,
                        "current_stream": lambda *a: SimulatedStream(), "get_raw_stream": lambda *a: 0,
                        "memory_allocated": lambda *a: 0, "set_device": lambda device: None}.items():
        setattr(CudaInterface, name, staticmethod(value))
    CudaInterface.Worker.get_device_properties = staticmethod(lambda *a: H200)  # type: ignore[method-assign]
    CudaInterface.Worker.current_device = staticmethod(lambda: 0)  # type: ignore[method-assign]
    triton.runtime.driver.set_active(SimulatedCudaDriver())
    # Dynamo and Inductor make fake modes of their own: none may constant-fold through real CUDA kernels.
    FakeTensorMode.avoid_device_init = property(lambda self: True)  # type: ignore[method-assign, assignment]
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(out / "inductor-cache")
    os.environ["TRITON_CACHE_DIR"] = str(out / "triton-cache")
    inductor_config.compile_threads = 1                 # every kernel compiled here, where it is counted
    inductor_config.fx_graph_cache = False
    inductor_config.shape_padding = False               # pad_mm benchmarks matmuls on the device
    inductor_config.joint_graph_constant_folding = False  # folds constants by running device ops
    if hasattr(inductor_config, "use_static_cuda_launcher"):
        inductor_config.use_static_cuda_launcher = False  # it exists only in CUDA builds of torch
    functorch_config.force_non_lazy_backward_lowering = True   # the backward now, not at the first backward()


class Collector:
    """What Inductor generated: each graph's module source, and each kernel's cubin."""

    def __init__(self, out: Path, compile_kernels: bool) -> None:
        self.out, self.compile_kernels = out, compile_kernels
        self.graphs: list[dict] = []
        self.kernels: list[tuple[str, bytes | None]] = []

    def install(self) -> None:
        from torch._inductor.codecache import PyCodeCache
        from torch._inductor.runtime.triton_heuristics import CachingAutotuner

        load = PyCodeCache.load_by_key_path.__func__  # type: ignore[attr-defined]
        collector = self

        def load_by_key_path(cls: Any, key: str, path: str, *args: Any, **kwargs: Any) -> Any:
            source = Path(path).read_text()
            if "def call(" in source:
                collector.graphs.append({"source": source, "path": path})
                if not collector.compile_kernels:
                    raise GraphNotRun(path)
            module = load(cls, key, path, *args, **kwargs)      # compiles the graph's kernels for sm_90
            if callable(getattr(module, "call", None)):
                def refuse(*a: Any, _path: str = path, **k: Any) -> None:
                    raise GraphNotRun(_path)
                module.call = refuse
            return module

        PyCodeCache.load_by_key_path = classmethod(load_by_key_path)  # type: ignore[method-assign, assignment]
        precompile = CachingAutotuner._precompile_worker

        def precompile_and_keep(self: Any) -> None:
            precompile(self)
            for result in self.compile_results:
                collector.kernels.append((self.inductor_meta.get("kernel_name", "?"), getattr(result.kernel, "asm", {}).get("cubin")))

        CachingAutotuner._precompile_worker = precompile_and_keep  # type: ignore[method-assign]
        CachingAutotuner._make_launchers = lambda self: None  # type: ignore[method-assign]   # launching needs a driver
        CachingAutotuner._dynamic_scale_rblock = lambda self: None  # type: ignore[method-assign]


class CountingInductor:
    """Inductor as a ``torch.compile`` backend, counting the graphs it is handed."""

    def __init__(self) -> None:
        from torch._inductor.compile_fx import compile_fx
        self.compile_fx, self.graphs = compile_fx, 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> Any:
        self.graphs += 1
        return self.compile_fx(gm, example_inputs)


def calls_in(source: str) -> dict[str, dict[str, int]]:
    """The eager fallbacks (``torch.ops.aten.*``) and library calls (``extern_kernels.*``) a
    generated graph makes, counted by op."""
    body = source[source.index("def call("):]
    fallbacks = collections.Counter(re.findall(r"torch\.ops\.(aten\.[A-Za-z0-9_]+)(?:\.[A-Za-z0-9_]+)?\(", body))
    externs = collections.Counter(re.findall(r"extern_kernels\.([A-Za-z0-9_]+)\(", body))
    return {"fallbacks": dict(fallbacks), "externs": dict(externs)}


def plant(fault: str | None) -> None:
    """A fault put into the models' forward for the block of this process."""
    if fault is None:
        return
    from speedrun.models.fast_net import FastNet

    forward = FastNet.forward

    def planted_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        out = forward(self, x)
        if fault == "graph-break":
            torch._dynamo.graph_break()
        elif fault == "fallback":
            out = out + torch.nanmedian(out, dim=1, keepdim=True).values * 0   # nanmedian: no Inductor lowering
        return out

    FastNet.forward = planted_forward  # type: ignore[method-assign]


def generate(recipe_name: str, compile_kernels: bool, fault: str | None) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"inductor-sm90-{recipe_name}-"))
    prepare_inductor(out)
    collector = Collector(out, compile_kernels)
    collector.install()
    plant(fault)

    from speedrun.recipes import get_recipe
    from speedrun.training.trainer import Trainer
    from tests.support.simcuda import CountedHostReads, simulated_cuda, simulated_device_data

    recipe = get_recipe(recipe_name)
    backend = CountingInductor()
    stages: dict[str, Any] = {}
    with simulated_cuda(), CountedHostReads():
        cuda = torch.device("cuda", 0)
        data = simulated_device_data()
        trainer = Trainer(recipe.model, data, augment=recipe.augment, optimizer=recipe.optimizer, train=recipe.train,
                          compile_model=True, compile_backend=backend, extensions=recipe.extensions)
        gen = torch.Generator(device=cuda)
        indices = torch.arange(recipe.train.batch_size, device=cuda)
        batch, params = trainer.step_input(data.train_images, indices, trainer.augment_params(gen, indices, 1, None))
        images = torch.empty(recipe.train.eval_batch_size, 3, 32, 32, device=cuda).contiguous(memory_format=torch.channels_last)

        def train_step() -> Any:
            trainer.model.train()
            return trainer.batch_loss(batch, data.train_labels[indices], params)

        def eval_forward() -> Any:
            trainer.model.eval()
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                return trainer.forward(images)

        for label, fn in (("train step", train_step), ("eval forward", eval_forward)):
            stages[label] = attempt(fn)
        graphs_first = backend.graphs
        with torch._dynamo.config.patch(error_on_recompile=True):
            for label, fn in (("train step again", train_step), ("eval forward again", eval_forward)):
                stages[label] = attempt(fn)
    kernels = report_kernels(collector.kernels, out)
    return {"recipe": recipe_name, "fault": fault, "stages": stages, "graphs_compiled": graphs_first,
            "graphs_recompiled": backend.graphs - graphs_first,
            "graph_breaks": sum(torch._dynamo.utils.counters["graph_break"].values()),
            "graphs": [calls_in(g["source"]) for g in collector.graphs], **kernels,
            "torch": torch.__version__}


def attempt(fn: Any) -> dict:
    """``generated`` when the compiled graph was reached (its call refuses to run), else the error."""
    try:
        fn()
        return {"outcome": "ran"}
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, GraphNotRun):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            return {"outcome": "generated"}
        traceback.print_exc(file=sys.stderr)
        message = " ".join(line.strip() for line in str(exc).strip().split("\n")[:4])
        return {"outcome": "failed", "error": type(exc).__name__, "message": message[:600]}


def report_kernels(kernels: list[tuple[str, bytes | None]], out: Path) -> dict:
    from tests.support.sm90 import resource_usage

    folder = out / "cubin"
    folder.mkdir(exist_ok=True)
    per_kernel: dict[str, dict] = {}
    missing = []
    for i, (name, cubin) in enumerate(kernels):
        if not cubin:
            missing.append(name)
            continue
        path = folder / f"{i:03d}_{name}.cubin"
        path.write_bytes(cubin)
        registers, local = resource_usage(str(path))
        worst = per_kernel.setdefault(name, {"registers": 0, "local_bytes": 0})
        worst["registers"] = max(worst["registers"], registers or 0)
        worst["local_bytes"] = max(worst["local_bytes"], local or 0)
    return {"kernel_configs": len(kernels), "kernels": per_kernel, "without_cubin": missing}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.inductor_sm90")
    parser.add_argument("recipe")
    parser.add_argument("--source-only", action="store_true", help="generate the code, compile no kernel")
    parser.add_argument("--plant", choices=("graph-break", "fallback"), default=None)
    args = parser.parse_args(argv)
    result = generate(args.recipe, not args.source_only, args.plant)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
