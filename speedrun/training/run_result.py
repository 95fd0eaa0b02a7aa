"""What one run reports: its per-epoch log and its result, as the record stores them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class EpochLog:
    epoch: int
    lr: float
    train_loss: float | None            # None: not finite (the run diverged)
    train_acc: float | None             # None: not counted (TrainConfig.train_accuracy off)
    test_acc: float | None
    elapsed_s: float


@dataclass
class RunResult:
    seed: int
    status: str = "ok"                  # "ok", "diverged" or "failed"
    error: str | None = None
    epochs: list[EpochLog] = field(default_factory=list)
    final_test_acc: float | None = None
    reached_target: bool = False
    time_to_target_s: float | None = None
    train_time_s: float = 0.0
    nvml: dict = field(default_factory=dict)
    extension: dict = field(default_factory=dict)    # what SWA or a snapshot ensemble did, and its gain

    def to_dict(self) -> dict:
        return asdict(self)
