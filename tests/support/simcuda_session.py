"""The simulated H200 as speedrun's commands meet it, the anchor's other side (airbench 0.1.8)
included: :func:`simulated_session`, shared by the ``simcuda`` scenarios and the GPU plan's
launcher (:mod:`tests.support.simcuda_python`).

Why beside :mod:`tests.support.simcuda`: airbench is someone else's code, written for a real GPU,
and it meets the fake tensors in places speedrun does not. What it needs, for the session only:

* a ``torchvision`` (:mod:`tests.support.torchvision_standin`: a real one cannot import beside a
  CPU-only torch);
* host values made as host values: the ``torch.arange(n)`` of its schedules and the ``torch.empty``
  of a new net's weights make real CPU tensors, as on the GPU machine (:func:`host_factories`), so
  its optimizer reading an lr from a CPU schedule is not mistaken for a device read;
* ``Module.to(memory_format=...)``/``.float()`` of a net whose parameters are already fake CUDA
  tensors (:func:`swappable_fake_parameters`);
* ``torch.load(..., map_location=<cuda>)`` (:func:`loading_onto_the_device`);
* data-dependent shapes (its boolean-mask crop): allowed inside its entry points only, so a
  ``nonzero``-like op of speedrun's (a host sync on a GPU) still fails;
* its own host reads: ``evaluate`` ends in ``.item()`` of the accuracy, which cannot give a number
  on a fake tensor. Reads made by code in airbench's package return 0 and are counted by site
  (:class:`PackageHostReads`); a read anywhere else still raises, and speedrun's one read an epoch
  stays the counted ``.tolist()`` of :class:`~tests.support.simcuda.CountedHostReads`.

And for ``speedrun profile``: a profiler that leaves out the CUDA activity, which a CPU-only build
cannot record (:func:`profiler_on_the_host`).

So airbench's accuracy is 0 in these records, and no op has device time in a profile: they check
that the flow runs on a CUDA device, never what it measures.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily
from torch.fx.experimental.symbolic_shapes import ShapeEnv
from torch.utils._pytree import tree_leaves, tree_map_only

from tests.support import torchvision_standin
from tests.support.simcuda import CountedHostReads, SimulatedCudaTensorMode, simulated_cuda

AIRBENCH_ENTRY_POINTS = ("train94", "evaluate")      # what speedrun's Airbench94 calls (warmup94 calls train94)
_MISSING = object()


def airbench_installed() -> bool:
    """Whether ``airbench`` can be found (not imported: its import needs the stand-in torchvision)."""
    return importlib.util.find_spec("airbench") is not None


class PackageHostReads:
    """Host reads of a fake tensor (``.item()``, ``float()``, ``int()``, ``bool()``) made by code inside
    ``package_dir`` return zero and are counted by site (``file:function``); made anywhere else, they
    raise as before.

    Why: such a read cannot give a number on a fake tensor. airbench's own reads are airbench's
    business (it ends each evaluation with one); speedrun's code must still make none."""

    READS = ("item", "__float__", "__int__", "__bool__")

    def __init__(self, package_dir: str | os.PathLike) -> None:
        self.package_dir = str(Path(package_dir).resolve())
        self.sites: collections.Counter[str] = collections.Counter()
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> PackageHostReads:
        for name in self.READS:
            self._saved[name] = FakeTensor.__dict__.get(name, _MISSING)
            setattr(FakeTensor, name, self._lenient(name, getattr(FakeTensor, name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, saved in self._saved.items():
            if saved is _MISSING:
                delattr(FakeTensor, name)
            else:
                setattr(FakeTensor, name, saved)
        self._saved.clear()

    def _lenient(self, name: str, original: Callable) -> Callable:
        inside = self.package_dir + os.sep

        def read(tensor: torch.Tensor, *args: Any) -> Any:
            caller = sys._getframe(1).f_code
            if not caller.co_filename.startswith(inside):
                return original(tensor, *args)
            self.sites[f"{os.path.relpath(caller.co_filename, os.path.dirname(self.package_dir))}:{caller.co_name}"] += 1
            return _ZEROS[name] if name in _ZEROS else _zero_item(tensor.dtype)

        read.__name__ = name
        return read


_ZEROS: dict[str, Any] = {"__float__": 0.0, "__int__": 0, "__bool__": False}


def _zero_item(dtype: torch.dtype) -> float | int | bool:
    """The zero ``.item()`` gives for ``dtype``: a bool, an int or a float, as the real read would."""
    if dtype == torch.bool:
        return False
    return 0.0 if dtype.is_floating_point or dtype.is_complex else 0


# Frames that only pass an op on: torch's own, the fake mode's (simcuda.py) and this module's.
_NOT_THE_CALLER = (str(Path(torch.__file__).parent) + os.sep, str(Path(__file__).with_name("simcuda.py")), __file__)


def _calling_file(frame: types.FrameType | None) -> str:
    """The file of the nearest frame outside torch and these helpers: the code that called the op."""
    while frame is not None and frame.f_code.co_filename.startswith(_NOT_THE_CALLER):
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else ""


@contextlib.contextmanager
def host_factories(package_dir: str | os.PathLike) -> Iterator[None]:
    """A factory op called by code in ``package_dir`` that names only the CPU (``torch.arange(n)``,
    the ``torch.empty`` of a new layer's weight) makes a real CPU tensor for the block, as it does
    on the GPU machine.

    Why: in the fake mode an op without a real tensor input is fake, so host values that airbench
    builds this way (its step schedule, a new net's parameters) became fake CPU tensors: the lr its
    optimizer reads from that CPU schedule was refused as a device read. Speedrun's ops are left as
    they are, as are ops that name a CUDA device, pinned ones (pinning needs the driver) and the
    ops the fake mode runs to carry out another (the CPU buffer of a device-to-host copy: made real,
    a read of the device would come back as real zeros)."""
    inside = str(Path(package_dir).resolve()) + os.sep
    original = SimulatedCudaTensorMode.__torch_dispatch__
    depth = threading.local()

    def dispatch(self: SimulatedCudaTensorMode, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        leaves = tree_leaves((args, kwargs))
        devices = [x for x in leaves if isinstance(x, torch.device)]
        if (not getattr(depth, "level", 0) and devices and all(d.type == "cpu" for d in devices)
                and not kwargs.get("pin_memory") and not any(isinstance(x, torch.Tensor) for x in leaves)
                and _calling_file(sys._getframe(1)).startswith(inside)):
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        depth.level = getattr(depth, "level", 0) + 1
        try:
            return original(self, func, types, args, kwargs)
        finally:
            depth.level -= 1

    SimulatedCudaTensorMode.__torch_dispatch__ = dispatch  # type: ignore[method-assign]
    try:
        yield
    finally:
        SimulatedCudaTensorMode.__torch_dispatch__ = original  # type: ignore[method-assign]


@contextlib.contextmanager
def swappable_fake_parameters() -> Iterator[None]:
    """``Module._apply`` (``.to``, ``.half``, ``.float``) of a module whose parameters are fake works for the block.

    Why: ``_apply`` swaps a fake parameter with its converted copy (``torch.utils.swap_tensors``), which
    refuses a tensor that has weak references, and the fake mode keeps one to every fake tensor. When
    that refusal comes for two fake tensors, the parameter takes the copy as its data (dtype, shape,
    strides) and its fake device, which ``.data =`` leaves as it was (it is the fake tensor's own field)."""
    real_swap = torch.utils.swap_tensors

    def swap(t1: torch.Tensor, t2: torch.Tensor) -> None:
        try:
            real_swap(t1, t2)
        except RuntimeError:
            if not (isinstance(t1, FakeTensor) and isinstance(t2, FakeTensor)):
                raise
            with torch.no_grad():
                t1.data = t2
            t1.fake_device = t2.fake_device

    torch.utils.swap_tensors = swap
    try:
        yield
    finally:
        torch.utils.swap_tensors = real_swap


def _cuda_location(map_location: Any) -> torch.device | None:
    if isinstance(map_location, (str, int, torch.device)):
        device = torch.device(map_location)
        return device if device.type == "cuda" else None
    return None


@contextlib.contextmanager
def loading_onto_the_device() -> Iterator[None]:
    """``torch.load(f, map_location=<a CUDA device>)`` loads on the CPU and moves each tensor with ``.to``.

    Why: torch.load restores a CUDA storage through the CUDA allocator, which a CPU-only build lacks;
    ``.to`` in the fake mode gives the fake CUDA tensor that the GPU machine's load would give."""
    real_load = torch.load

    def load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        device = _cuda_location(map_location)
        if device is None:
            return real_load(f, map_location, *args, **kwargs)
        loaded = real_load(f, "cpu", *args, **kwargs)
        return tree_map_only(torch.Tensor, lambda t: t.to(device), loaded)

    torch.load = load
    try:
        yield
    finally:
        torch.load = real_load


@dataclass
class AirbenchWatch:
    """What airbench did in a session: its entry points' calls and returns, and its host reads."""

    reads: PackageHostReads
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    returned: collections.Counter[str] = field(default_factory=collections.Counter)
    batches: int = 0          # training batches its loaders gave (a test loader's too, if iterated)

    def to_dict(self) -> dict:
        return {"calls": dict(self.calls), "returned": dict(self.returned), "batches": self.batches,
                "host_reads": dict(self.reads.sites)}


@contextlib.contextmanager
def watching_airbench(airbench: types.ModuleType, shape_env: ShapeEnv) -> Iterator[AirbenchWatch]:
    """airbench's entry points wrapped for the block: each call and return counted, data-dependent
    shapes allowed while one runs, its package's host reads lenient (:class:`PackageHostReads`)."""
    watch = AirbenchWatch(PackageHostReads(Path(airbench.__file__).parent))
    originals = {name: getattr(airbench, name) for name in AIRBENCH_ENTRY_POINTS}

    def wrapped(name: str, function: Callable) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            watch.calls[name] += 1
            settings = shape_env.settings      # frozen, and part of the fake mode's dispatch cache key
            shape_env.settings = dataclasses.replace(settings, allow_dynamic_output_shape_ops=True)
            try:
                result = function(*args, **kwargs)
            finally:
                shape_env.settings = settings
            watch.returned[name] += 1
            return result
        return call

    loader = airbench.CifarLoader
    real_iter = loader.__iter__

    def batches(self: Any) -> Iterator[Any]:
        for batch in real_iter(self):
            watch.batches += 1
            yield batch

    for name, function in originals.items():      # the package's globals: warmup94 calls the wrapped train94
        setattr(airbench, name, wrapped(name, function))
    loader.__iter__ = batches
    try:
        with watch.reads:
            yield watch
    finally:
        for name, function in originals.items():
            setattr(airbench, name, function)
        loader.__iter__ = real_iter


def import_airbench() -> types.ModuleType | None:
    """airbench imported beside the stand-in torchvision, or None where it is not installed."""
    if not airbench_installed():
        return None
    if "torchvision" not in sys.modules:
        torchvision_standin.install()
    return importlib.import_module("airbench")


@contextlib.contextmanager
def profiler_on_the_host() -> Iterator[None]:
    """``torch.profiler.profile`` records the CPU's activity only, for the block.

    Why: asked for the CUDA activity, a CPU-only build's profiler fails to record a CUDA event at
    every op and logs a stack trace for each (megabytes an epoch, minutes on two cores). Without it
    no op has device time: a profile on the simulated H200 lists none, but runs through."""
    from torch.profiler import ProfilerActivity, profile

    real_init = profile.__init__

    def init(self: Any, *args: Any, activities: Any = None, **kwargs: Any) -> None:
        if activities is not None:
            activities = [a for a in activities if a != ProfilerActivity.CUDA] or [ProfilerActivity.CPU]
        real_init(self, *args, activities=activities, **kwargs)

    profile.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        profile.__init__ = real_init  # type: ignore[method-assign]


@dataclass
class SimulatedSession:
    """What a session saw: speedrun's counted reads (by site), and airbench's calls and reads (None
    where airbench is not installed)."""

    ours: CountedHostReads
    airbench: AirbenchWatch | None
    mode: Any

    def to_dict(self) -> dict:
        return {"host_reads": dict(self.ours.sites), "airbench": None if self.airbench is None else self.airbench.to_dict()}


@contextlib.contextmanager
def simulated_session(pynvml: types.ModuleType | None = None) -> Iterator[SimulatedSession]:
    """The simulated H200 as speedrun's commands meet it, the anchor's airbench side included.

    Host reads by ``.tolist()`` are counted zeros (speedrun's one read an epoch); any other host
    read of a fake tensor raises, except airbench's own. Data-dependent output shapes raise, except
    inside airbench's entry points (the shape environment has them off and ``.item()`` never gives
    a symbol)."""
    airbench = import_airbench()
    shape_env = ShapeEnv(allow_dynamic_output_shape_ops=False, allow_scalar_outputs=False)
    with contextlib.ExitStack() as stack:
        mode = stack.enter_context(simulated_cuda(pynvml, shape_env=shape_env))
        ours = stack.enter_context(CountedHostReads())
        stack.enter_context(profiler_on_the_host())
        watch = None
        if airbench is not None:
            for block in (host_factories(Path(airbench.__file__).parent), swappable_fake_parameters(), loading_onto_the_device()):
                stack.enter_context(block)
            watch = stack.enter_context(watching_airbench(airbench, shape_env))
        yield SimulatedSession(ours, watch, mode)
