"""airbench94 (the ``airbench`` package, 0.1.8) as an anchor side, and the registry of sides."""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from speedrun.bench.anchor_side import DATA_FOLDER, AnchorOutcome, AnchorSide
from speedrun.errors import SpeedrunError

AIRBENCH_VERSION = "0.1.8"
TRAIN_BATCH = 1024                     # airbench94's training batch; its loader drops a partial last batch


@dataclass
class Airbench94:
    """airbench's ``train94`` (airbench 0.1.8, its published defaults) and its TTA evaluation."""

    label: str = "airbench94"
    tta_level: int = 2                 # mirror + 1-px translations: the level airbench94 reports
    _airbench: Any = field(default=None, repr=False)
    _train: Any = field(default=None, repr=False)
    _test: Any = field(default=None, repr=False)

    def check(self, device: torch.device, train_images: int) -> None:
        if device.type != "cuda":
            raise SpeedrunError(
                f"the airbench94 anchor needs a CUDA GPU (airbench runs only on CUDA) and the device here is "
                f"{device}; run 'speedrun anchor airbench94' on a GPU machine")
        if device.index not in (None, 0):
            raise SpeedrunError(
                f"--device {device}: airbench loads its data onto GPU 0 only; choose the GPU with "
                f"CUDA_VISIBLE_DEVICES and pass --device cuda")
        if train_images < TRAIN_BATCH:
            raise SpeedrunError(
                f"--train-subset {train_images}: airbench94 trains in batches of {TRAIN_BATCH} and drops a partial "
                f"one, so fewer images train nothing (and crash its warm-up); use --train-subset {TRAIN_BATCH} or more")
        self._airbench = import_airbench()

    def prepare(self, device: torch.device) -> None:
        ab = self._airbench or import_airbench()
        self._airbench = ab
        self._train = ab.CifarLoader(DATA_FOLDER, train=True, batch_size=TRAIN_BATCH, aug={"flip": True, "translate": 2},
                                     altflip=True)
        self._test = ab.CifarLoader(DATA_FOLDER, train=False, batch_size=2000)

    def rehearse(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self._airbench.warmup94(train_loader=self._train)          # one training step, then returns
            self._airbench.evaluate(self._airbench.make_net94(), self._test, tta_level=self.tta_level)

    def run(self, seed: int) -> AnchorOutcome:
        torch.manual_seed(seed)              # airbench draws everything from the global generator
        model = self._airbench.train94(train_loader=self._train, verbose=False)
        accuracy = self._airbench.evaluate(model, self._test, tta_level=self.tta_level)
        epochs = self._airbench.lib_airbench94.hyp["opt"]["train_epochs"]
        return AnchorOutcome(final_test_acc=float(accuracy), epochs=float(epochs))

    def describe(self) -> dict:
        return {
            "package": "airbench",
            "version": _installed_version("airbench"),
            "call": f"airbench.train94(train_loader, verbose=False) then airbench.evaluate(model, test_loader, "
                    f"tta_level={self.tta_level}), after torch.manual_seed(seed)",
            "settings": "airbench94 published defaults: 9.9 epochs, batch 1024, flip (alternating) + 2-px translate",
            "own_timer": "airbench's own timer (printed with verbose=True) covers the whitening init, each "
                         "epoch's training loop and the final TTA evaluation; it excludes building the net and "
                         "loading the test set onto the GPU inside train94, which the anchor's call time includes",
            "process_effects": "importing airbench sets torch.backends.cudnn.benchmark=True for the whole "
                               "process; it is imported before any run, so both sides run with it",
        }


def import_airbench() -> Any:
    """The airbench module, checked for the pinned version; SpeedrunError names the fix."""
    try:
        airbench = importlib.import_module("airbench")
    except ImportError as e:
        raise SpeedrunError(
            f"the airbench94 anchor needs the airbench package ({e}); install it with "
            f"pip install 'airbench=={AIRBENCH_VERSION}' torchvision, or pip install 'speedrun[anchor]'") from None
    version = _installed_version("airbench")
    if version != AIRBENCH_VERSION:
        raise SpeedrunError(f"found airbench {version}, but the anchor is written against airbench "
                            f"{AIRBENCH_VERSION}; pip install 'airbench=={AIRBENCH_VERSION}'")
    return airbench


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


ANCHORS: dict[str, Callable[[], AnchorSide]] = {"airbench94": Airbench94}
