"""A simulated CUDA device for machines without a GPU: speedrun's CUDA code path on fake tensors.

Why: nothing in speedrun's CUDA branches (device placement, autocast dtypes, fused SGD with a
device learning rate, CUDA events, NVML) runs on a CPU, so a bug there waits for a rare GPU
lease. Under :func:`simulated_cuda` every ``cuda:0`` tensor is a fake tensor: it has a shape,
a dtype and a device but no data, so

* a tensor on the wrong device fails at the op that mixes them (``FakeTensorDeviceMismatchError``);
* a host read of device data (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``) raises
  ``DataDependentOutputException``: a hidden sync is an error, not a slowdown. Code that must
  read once an epoch goes through :class:`CountedHostReads`, which counts those reads by site;
* the driver-bound ``torch.cuda`` calls answer as one H200 (sm_90, 132 SMs) would.

A CUDA graph's capture runs its code once on fake tensors, so a host read or a stray CPU
tensor inside it fails, and optimizers that refuse capture say so; a replay is only counted.

What it cannot tell: times, numerics, memory, CUDA-graph replay, streams (see the README).
Ops whose tensors are all real CPU tensors still run for real (schedules, data loading).

In a CPU-only torch build the real autograd engine needs a CUDA device guard and CUDA hooks;
:mod:`tests.support.cuda_shim` builds a small library giving both, loaded with ``LD_PRELOAD``
(the ``simcuda`` tests run their scenarios in such a child process). Without it,
``Tensor.backward`` is replaced by :func:`_backward_standin`.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch._subclasses import fake_tensor
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

H200 = types.SimpleNamespace(
    name="NVIDIA H200 (simulated)", major=9, minor=0, total_memory=150_754_820_096, multi_processor_count=132,
    L2_cache_size=60 * 2**20, warp_size=32, max_threads_per_multi_processor=2048, regs_per_multiprocessor=65536,
    shared_memory_per_block_optin=232448, gcnArchName="", uuid="simulated")


class SimulatedCudaTensorMode(FakeTensorMode):
    """Fake tensors for the device, real ones for the host.

    ``avoid_device_init`` stays True although ``torch.cuda.is_available()`` is patched to say
    True: otherwise fake mode would constant-fold through real CUDA kernels, which do not
    exist here. An op whose tensors are all plain CPU tensors (and that names no other device)
    runs for real, so host-side work (a schedule's values, ``torch.tensor`` of host numbers)
    keeps its data."""

    @property
    def avoid_device_init(self) -> bool:
        return True

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        leaves = torch.utils._pytree.tree_leaves((args, kwargs))
        tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
        if tensors and all(_is_host_tensor(t) for t in tensors) and not any(
                isinstance(x, torch.device) and x.type != "cpu" for x in leaves):
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        if getattr(func, "_opname", None) in FUSED_OPTIMIZER_OPS:
            # Here, not in the Meta kernel only: inside a kernel every fake tensor's device reads "meta".
            _fused_optimizer_device_rules(func._opname, *args, **kwargs)
        try:
            return super().__torch_dispatch__(func, types, args, kwargs)
        except RuntimeError as exc:
            if type(exc) is RuntimeError and str(exc).startswith(_DEVICE_MISMATCH):
                raise FakeTensorDeviceMismatchError(str(exc)) from None
            raise


_DEVICE_MISMATCH = "Unhandled FakeTensor Device Propagation"


if hasattr(fake_tensor, "FakeTensorDeviceMismatchError"):
    FakeTensorDeviceMismatchError = fake_tensor.FakeTensorDeviceMismatchError
else:
    class FakeTensorDeviceMismatchError(RuntimeError):  # type: ignore[no-redef]
        """Older torch (2.11, the GPU machine's) raises a plain ``RuntimeError`` for two devices in
        one op; the simulation raises this instead, under the name newer torch gives its class."""


def _is_host_tensor(t: torch.Tensor) -> bool:
    return type(t) in (torch.Tensor, torch.nn.Parameter) and t.device.type == "cpu"


_HostGenerator = torch.Generator      # the real class: torch.Generator is replaced inside simulated_cuda


class SimulatedCudaGenerator(_HostGenerator):
    """A generator that says it lives on ``cuda:0``: fake random ops read only its device."""

    def __new__(cls, device: Any = None) -> SimulatedCudaGenerator:
        self = _HostGenerator.__new__(cls)
        where = torch.device(device) if device is not None else torch.device("cpu")
        self._where = torch.device("cuda", 0) if where.type == "cuda" else where
        return self

    def __init__(self, device: Any = None) -> None:
        super().__init__()

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self._where


class SimulatedEvent:
    """``torch.cuda.Event``: checks the record / synchronize / elapsed_time protocol; 1 ms apart."""

    def __init__(self, enable_timing: bool = False, **_: Any) -> None:
        self.enable_timing, self.recorded = enable_timing, False

    def record(self, stream: Any = None) -> None:
        self.recorded = True

    def synchronize(self) -> None:
        if not self.recorded:
            raise RuntimeError("Event.synchronize() before record()")

    def query(self) -> bool:
        return self.recorded

    def elapsed_time(self, other: SimulatedEvent) -> float:
        if not (self.enable_timing and other.enable_timing):
            raise RuntimeError("elapsed_time needs enable_timing=True on both events")
        if not (self.recorded and other.recorded):
            raise RuntimeError("elapsed_time of an event never recorded")
        return 1.0


class SimulatedStream:
    """``torch.cuda.Stream``: one device, one queue; waiting is ordering, which fake tensors need not."""

    device = torch.device("cuda", 0)
    device_index, device_type, stream_id, cuda_stream, priority = 0, 1, 0, 0, 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SimulatedStream)

    def __hash__(self) -> int:
        return 0

    def query(self) -> bool:
        return True

    def wait_stream(self, stream: Any) -> None:
        pass

    def is_capturing(self) -> bool:
        return CAPTURE.active

    def synchronize(self) -> None:
        if CAPTURE.active:
            raise RuntimeError("Stream.synchronize() during CUDA graph capture")


class _Capture:
    """Whether a simulated CUDA graph is being captured, and how many were captured and replayed."""

    def __init__(self) -> None:
        self.active, self.captures, self.replays = False, 0, 0


CAPTURE = _Capture()


class SimulatedCUDAGraph:
    """``torch.cuda.CUDAGraph``: capture runs the code once on fake tensors (so a host read or a
    device mismatch inside it fails), replay counts and does nothing (nothing can be replayed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.captured = False

    def capture_begin(self, *args: Any, **kwargs: Any) -> None:
        if CAPTURE.active:
            raise RuntimeError("a CUDA graph capture inside another")
        CAPTURE.active = True

    def capture_end(self) -> None:
        CAPTURE.active, self.captured = False, True
        CAPTURE.captures += 1

    def replay(self) -> None:
        if not self.captured:
            raise RuntimeError("CUDAGraph.replay() before its capture ended")
        CAPTURE.replays += 1


@contextlib.contextmanager
def simulated_graph_capture(graph: SimulatedCUDAGraph, *args: Any, **kwargs: Any) -> Iterator[None]:
    """``torch.cuda.graph(g)``: the block is captured into ``g``."""
    graph.capture_begin()
    try:
        yield
    finally:
        graph.capture_end()


def _synchronize(*args: Any) -> None:
    if CAPTURE.active:
        raise RuntimeError("torch.cuda.synchronize() during CUDA graph capture: the capture would fail")


class CountedHostReads:
    """``Tensor.tolist()`` of a fake tensor returns zeros and is counted by the line that asked.

    The trainer reads the device once an epoch, on purpose; counting by site shows that it is
    the only read (every other host read still raises)."""

    def __init__(self) -> None:
        self.sites: collections.Counter[str] = collections.Counter()
        self._original: Callable | None = None

    def __enter__(self) -> CountedHostReads:
        self._original = original = FakeTensor.tolist

        def tolist(tensor: torch.Tensor) -> Any:
            if not isinstance(tensor, FakeTensor):
                return original(tensor)
            caller = sys._getframe(1)
            self.sites[f"{caller.f_code.co_filename.rsplit('/speedrun/', 1)[-1]}:{caller.f_code.co_name}"] += 1
            return np.zeros(tuple(tensor.shape)).tolist()

        FakeTensor.tolist = tolist  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        FakeTensor.tolist = self._original  # type: ignore[method-assign]


def _fused_optimizer_device_rules(op: str, params: list, grads: list, *states: list, lr: Any = None, **_: Any) -> None:
    """The fused optimizers' CUDA kernels (SGD, Adam, AdamW, Adagrad) ship no fake kernel: this
    one enforces their device and dtype rules and computes nothing.

    A CPU lr tensor beside CUDA parameters is refused: the CUDA kernel would read it to the
    host every step."""
    device = params[0].device
    if op == "_fused_adagrad_" and device.type == "cuda":
        raise RuntimeError("fused Adagrad has no CUDA kernel in torch 2.11 (the GPU machine's torch)")
    for name, group in (("params", params), ("grads", grads), *((f"state list {i}", s) for i, s in enumerate(states))):
        for t in group:
            if t.device != device:
                raise RuntimeError(f"fused optimizer: {name} on {t.device}, params on {device}")
    for p, g in zip(params, grads):
        if p.dtype != g.dtype or p.shape != g.shape:
            raise RuntimeError(f"fused optimizer: a {g.dtype} {tuple(g.shape)} grad for a {p.dtype} {tuple(p.shape)} param")
    if isinstance(lr, torch.Tensor) and lr.device != device:
        why = " (the CUDA kernel would read it to the host every step)" if lr.device.type == "cpu" else ""
        raise RuntimeError(f"fused optimizer: lr on {lr.device}, params on {device}{why}")


FUSED_OPTIMIZER_OPS = ("_fused_sgd_", "_fused_adam_", "_fused_adamw_", "_fused_adagrad_")
_registered: list[torch.library.Library] = []


def register_missing_fake_kernels() -> None:
    """Fake kernels for the CUDA-only ops speedrun calls that ship none (the fused optimizers), once."""
    if _registered:
        return
    lib = torch.library.Library("aten", "IMPL")
    # Adam(W)'s default overload has a Python meta kernel: ours replaces it (it adds the device
    # rules). torch >= 2.13 allows that by default; 2.5-2.12 must be asked.
    override = {"allow_override": True} if "allow_override" in inspect.signature(lib.impl).parameters else {}
    for op in FUSED_OPTIMIZER_OPS:
        for overload in getattr(torch.ops.aten, op).overloads():
            lib.impl(op if overload == "default" else f"{op}.{overload}", functools.partial(_fused_optimizer_device_rules, op),
                     "Meta", **override)
    _registered.append(lib)


def _backward_standin(self: torch.Tensor, gradient: Any = None, retain_graph: Any = None, create_graph: bool = False,
                      inputs: Any = None) -> None:
    """Without the preloaded shim the engine cannot run CUDA nodes: give each reached leaf a
    gradient like itself (device, dtype, shape), which is what backward gives these models."""
    if self.grad_fn is None:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    seen, todo = set(), [self.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)
        if leaf is not None and leaf.requires_grad:
            grad = torch.empty_like(leaf)
            leaf.grad = grad if leaf.grad is None else leaf.grad + grad
        todo.extend(next_node for next_node, _ in node.next_functions)


def engine_runs_cuda() -> bool:
    """True when the real autograd engine can run CUDA nodes here: the shim is preloaded (or a
    real GPU is there). A CUDA build without a driver has a CUDA accelerator, but its hooks
    report no device and the engine fails at ``hasPrimaryContext(0)``."""
    accelerator = torch._C._accelerator_getAccelerator()
    return accelerator is not None and accelerator.type == "cuda" and _hooks_report_a_device()


def _hooks_report_a_device() -> bool:
    try:
        if hasattr(torch._C, "_accelerator_hooks_device_count"):       # the hooks the engine asks
            return torch._C._accelerator_hooks_device_count() > 0
        return bool(torch._C._cuda_getDeviceCount()) if hasattr(torch._C, "_cuda_getDeviceCount") else True
    except RuntimeError:
        return False


def _build_modules_on_the_host() -> None:
    """``Module.to`` cannot swap a fake parameter in place (weak references): every model config
    builds a real CPU module, and the code's own ``.to(device)`` makes it a fake CUDA one."""
    from speedrun.models.fast_net import FastNetConfig
    from speedrun.models.resnet9 import ResNet9Config

    for cls in (FastNetConfig, ResNet9Config):
        build = cls.build
        if getattr(build, "_on_the_host", False):
            continue

        def on_the_host(self: Any, *args: Any, _build: Callable = build, **kwargs: Any) -> Any:
            with unset_fake_temporarily():
                return _build(self, *args, **kwargs)

        on_the_host._on_the_host = True  # type: ignore[attr-defined]
        cls.build = on_the_host  # type: ignore[method-assign]


def cuda_patches() -> dict[tuple[Any, str], Any]:
    """The driver-bound calls, answered as one H200 would."""
    patches: dict[tuple[Any, str], Any] = {
        (torch.cuda, "is_available"): lambda: True,
        (torch.cuda, "_lazy_init"): lambda: None,
        (torch.cuda, "is_initialized"): lambda: True,
        (torch.cuda, "device_count"): lambda: 1,
        (torch.cuda, "current_device"): lambda: 0,
        (torch.cuda, "set_device"): lambda device: None,
        (torch.cuda, "get_device_name"): lambda *a: H200.name,
        (torch.cuda, "get_device_properties"): lambda *a: H200,
        (torch.cuda, "get_device_capability"): lambda *a: (9, 0),
        (torch.cuda, "is_bf16_supported"): lambda *a, **k: True,
        (torch.cuda, "synchronize"): _synchronize,
        (torch.cuda, "Stream"): SimulatedStream,
        (torch.cuda, "current_stream"): lambda *a: SimulatedStream(),
        (torch.cuda, "stream"): lambda stream: contextlib.nullcontext(),
        (torch.cuda, "CUDAGraph"): SimulatedCUDAGraph,
        (torch.cuda, "graph"): simulated_graph_capture,
        (torch.cuda, "is_current_stream_capturing"): lambda: CAPTURE.active,
        (torch.accelerator, "current_stream"): lambda *a: SimulatedStream(),
        (torch.cuda, "set_sync_debug_mode"): lambda *a: None,
        (torch.cuda, "empty_cache"): lambda: None,
        (torch.cuda, "max_memory_allocated"): lambda *a: 0,
        (torch.cuda, "reset_peak_memory_stats"): lambda *a: None,
        (torch.cuda, "Event"): SimulatedEvent,
        (torch.cuda, "manual_seed"): lambda seed: None,
        (torch.cuda, "manual_seed_all"): lambda seed: None,
        (torch.backends.cudnn, "version"): lambda: 91900,
        (torch, "Generator"): SimulatedCudaGenerator,
        (torch.Tensor, "pin_memory"): lambda self, *a, **k: self,   # aten._pin_memory has no fake kernel
    }
    if hasattr(fake_tensor, "init_gpu_context"):
        # A fake CUDA tensor's first creation makes a real one "to initialise the context" once
        # CUDA looks available: with is_available() patched, a CUDA build without a driver fails.
        patches[(fake_tensor, "init_gpu_context")] = lambda device: None
    if not engine_runs_cuda():
        patches[(torch.Tensor, "backward")] = _backward_standin
    return patches


@contextlib.contextmanager
def patched(patches: dict[tuple[Any, str], Any]) -> Iterator[None]:
    """Set each ``(object, attribute)`` for the block, then put every original back."""
    missing = object()
    saved = {key: getattr(key[0], key[1], missing) for key in patches}
    for (obj, name), value in patches.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for (obj, name), value in saved.items():
            if value is missing:
                delattr(obj, name)
            else:
                setattr(obj, name, value)


@contextlib.contextmanager
def stand_in_module(name: str, module: types.ModuleType | None) -> Iterator[None]:
    """``sys.modules[name]`` is ``module`` for the block (nothing changes when it is None)."""
    if module is None:
        yield
        return
    saved = sys.modules.get(name)
    sys.modules[name] = module
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved


@contextlib.contextmanager
def simulated_cuda(pynvml: types.ModuleType | None = None, *, shape_env: Any = None) -> Iterator[FakeTensorMode]:
    """A simulated H200 for the block: fake ``cuda:0`` tensors, the driver calls answered, and
    ``pynvml`` replaced by the given stand-in. Yields the fake mode."""
    _build_modules_on_the_host()
    register_missing_fake_kernels()
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        with patched(cuda_patches()), stand_in_module("pynvml", pynvml), \
                SimulatedCudaTensorMode(allow_non_fake_inputs=True, shape_env=shape_env) as mode:
            yield mode
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)


def simulated_device_data(train: int = 50_000, test: int = 10_000) -> Any:
    """CIFAR-10's shapes on ``cuda:0`` (call inside :func:`simulated_cuda`): the pixels never
    matter on fake tensors, and fewer training images only shorten the epochs."""
    from speedrun.data.device_data import DeviceData

    cuda = torch.device("cuda", 0)
    return DeviceData(torch.empty(train, 3, 32, 32, dtype=torch.uint8, device=cuda), torch.empty(train, dtype=torch.long, device=cuda),
                      torch.empty(test, 3, 32, 32, dtype=torch.uint8, device=cuda), torch.empty(test, dtype=torch.long, device=cuda))
