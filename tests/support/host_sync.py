"""Find host syncs on any device, the CPU included.

On a GPU, ``torch.cuda.set_sync_debug_mode("error")`` fails on the first operation that makes
the host wait for the device. A CPU has no such mode, and there every such read is free, so a
loop that syncs every step looks fine until it first runs on a GPU. :class:`HostSyncCounter`
closes that gap: a ``TorchDispatchMode`` that records every operation whose result must be read
back to the host before Python can go on, on whatever device it runs:

* ``aten._local_scalar_dense`` (``.item()``, ``float(t)``, ``int(t)``, ``bool(t)``, ``if t:``),
  ``aten.is_nonzero``, ``aten.equal``, ``aten.allclose``;
* ops whose output size depends on the data (``nonzero``, ``masked_select``, ``unique``,
  indexing with a boolean mask, ``repeat_interleave`` without ``output_size``): on CUDA they
  copy a count back to the host;
* ``Tensor.tolist()`` and ``Tensor.numpy()``, which on a CPU tensor bypass the dispatcher and
  are caught by wrapping the two methods while the counter is active.

What it cannot see on a CPU: a device-to-host copy whose values are never read in Python (the
copy of a CPU tensor to the CPU is a no-op), and ``print``/``repr`` of a tensor. Code inside a
``torch.compile``d region is not dispatched through Python either; run the code eagerly to check it.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING_OPS = frozenset({
    "aten::_local_scalar_dense", "aten::is_nonzero", "aten::item", "aten::equal", "aten::allclose",
    "aten::nonzero", "aten::masked_select", "aten::unique", "aten::_unique", "aten::_unique2",
    "aten::unique_dim", "aten::unique_consecutive",
})
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
_THIS_FILE = str(Path(__file__).resolve())


@dataclass(frozen=True)
class HostSync:
    """One operation that read a device value back to the host, and the line of code that asked."""

    op: str
    where: str

    def __str__(self) -> str:
        return f"{self.op} at {self.where}"


class HostSyncCounter(TorchDispatchMode):
    """Records every host sync in its ``with`` block (see the module docstring for what counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[HostSync] = []
        self._originals: dict[str, Callable] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = func._schema.name
        if name in SYNCING_OPS or _is_data_dependent(func, args, kwargs):
            self._record(name)
        return func(*args, **kwargs)

    def _record(self, op: str) -> None:
        self.syncs.append(HostSync(op, _caller()))

    def __enter__(self) -> HostSyncCounter:
        self._originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, self._recording(name, original))
        try:
            super().__enter__()
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._restore()

    def _recording(self, name: str, original: Callable) -> Callable:
        def wrapper(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self._record(f"Tensor.{name}")
            return original(tensor, *args, **kwargs)
        return wrapper

    def _restore(self) -> None:
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        self._originals = {}

    def report(self, limit: int = 5) -> str:
        """The first ``limit`` syncs, one per line, and how many there were in all."""
        lines = [f"{len(self.syncs)} host sync(s):"] + [f"  {s}" for s in self.syncs[:limit]]
        if len(self.syncs) > limit:
            lines.append(f"  ... and {len(self.syncs) - limit} more")
        return "\n".join(lines)


def _is_data_dependent(func: Any, args: tuple, kwargs: dict) -> bool:
    """Ops whose output size needs the data: boolean-mask indexing, repeat_interleave without a size."""
    name = func._schema.name
    if name == "aten::index" and len(args) > 1:
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
    if name == "aten::repeat_interleave" and func._overloadname == "Tensor":   # repeat_interleave(repeats)
        return kwargs.get("output_size") is None
    return False


def _caller() -> str:
    """The innermost frame outside torch and this module: the code that asked for the value."""
    for frame in reversed(traceback.extract_stack()):
        filename = str(Path(frame.filename).resolve())
        if filename == _THIS_FILE or filename.startswith(_TORCH_DIR):
            continue
        return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "<unknown>"
