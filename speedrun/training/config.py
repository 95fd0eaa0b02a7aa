"""How a run trains and when it is evaluated: the loop's settings as data."""
from __future__ import annotations

from dataclasses import dataclass

TTA_MODES = ("none", "flip", "multi")
FLIP_MODES = ("random", "alternate")


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains and when it is evaluated."""

    epochs: int = 24
    batch_size: int = 512
    label_smoothing: float = 0.0
    tta: str = "flip"             # test-time views: "none", "flip" (image + mirror) or "multi" (+ 1-px shifts)
    flip_mode: str = "random"     # "random": each image flipped with p=1/2 every epoch; "alternate":
                                  # a random first epoch, then each image flipped in every other epoch
    eval_every: int = 1           # evaluate every k-th epoch (and always after the last)
    eval_batch_size: int = 1000
    stop_at_target: bool = True   # end a run at the first evaluation that reaches the target
    input_kernel: bool = False    # build each batch with kernels/augment_normalize (one fused pass)
                                  # instead of the reference ops; see kernels/README.md

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {self.tta!r}")
        if self.flip_mode not in FLIP_MODES:
            raise ValueError(f"flip_mode must be one of {', '.join(FLIP_MODES)}, got {self.flip_mode!r}")
