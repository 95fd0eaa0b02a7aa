"""Wall-time measurement that does not disturb the GPU queue.

On CUDA, events are recorded into the stream and read only when the caller syncs anyway
(at an epoch end), so timing adds no host sync inside an epoch. On CPU, work is synchronous
and ``time.perf_counter`` is exact.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


class Stopwatch:
    """Accumulates time over start/stop intervals; ``elapsed_s`` syncs only on CUDA, once."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._closed: list[tuple] = []
        self._open: tuple | None = None
        self._total_s = 0.0

    def start(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._open = (event,)
        else:
            self._open = (time.perf_counter(),)

    def stop(self) -> None:
        if self._open is None:
            raise RuntimeError("Stopwatch.stop() without start()")
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._closed.append((self._open[0], event))
        else:
            self._total_s += time.perf_counter() - self._open[0]
        self._open = None

    @property
    def elapsed_s(self) -> float:
        """Total of the closed intervals, in seconds."""
        if self.cuda and self._closed:
            self._closed[-1][1].synchronize()
            self._total_s += sum(a.elapsed_time(b) for a, b in self._closed) / 1000.0
            self._closed.clear()
        return self._total_s


def synchronize(device: torch.device) -> None:
    """Wait for queued device work; a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The rule every harness record states; the README's "The timer rule" says the same in prose.
TIMER_RULE = (
    "time covers the run's (re-)initialization, every training step and every evaluation needed "
    "to establish the target, "
    "measured with CUDA events on a GPU (perf_counter on CPU); moving the dataset to the device "
    "and the one-time rehearsal (torch.compile and first use, on random pixels) are measured separately and excluded"
)


class ProgressLog:
    """Says how far long work has got, at most every ``every_s`` seconds of the host's clock.

    For the CPU, where one epoch or an LR range test can take minutes: called after every step
    with ``(what, done, total)``, it logs a line only when enough time has passed since the
    last one. It reads no device value, but it is meant for CPU runs only (the harness does not
    give it to a GPU run, whose epochs take seconds).
    """

    def __init__(self, log: Callable[[str], None], every_s: float = 30.0) -> None:
        self.log, self.every_s = log, every_s
        self._last = time.perf_counter()

    def __call__(self, what: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self._last >= self.every_s and done < total:
            self._last = now
            self.log(f"  ... {what}: {done}/{total}")
