"""``--recipe-from RECORD`` rebuilds the run a record made: recipe, schedule, warm-up, extensions,
optimizer, subsets, target and data; the rebuilt run is the same run (same per-step lr, same losses
and accuracy on the same seed)."""
from __future__ import annotations

import json

import pytest
import torch

from speedrun.cli import main
from speedrun.data.cifar10 import CIFAR10_TRAIN_IMAGES
from speedrun.overrides import settings_from_flags

TINY = ["--epochs", "2", "--batch-size", "32", "--width", "0.125", "--no-compile", "--device", "cpu",
        "--train-subset", "96", "--test-subset", "40", "--seed", "5"]

# A spread over the flag space: policies and their parameters, durations in epochs and steps, the
# interval, warm-up, every extension, optimizers, augmentation and loop settings, other recipes.
FLAG_SETS = {
    "cosine-warmup": ["--schedule", "cosine_annealing_lr", "--base-lr", "0.1", "--warmup", "1ep",
                      "--train-subset", "512", "--test-subset", "200", "--target", "0.2", "--batch-size", "128"],
    "one-cycle-adam": ["--schedule", "one_cycle_lr", "--max-lr", "0.01", "--pct-start", "0.25",
                       "--optimizer", "adam", "--weight-decay", "0.0001", "--three-phase"],
    "recipe-schedule-swa": ["--swa-epochs", "1", "--swa-lr", "0.05", "--max-lr", "0.3"],
    "plateau-epochs": ["--schedule", "step_lr", "--base-lr", "0.1", "--step-size", "1", "--interval", "epoch",
                       "--plateau", "--plateau-patience", "0", "--cutout", "0"],
    "sgdr-snapshots": ["--recipe", "fast94", "--widths", "8,16,16", "--whiten-samples", "64",
                       "--schedule", "cosine_annealing_warm_restarts", "--base-lr", "0.1", "--T-0", "1ep",
                       "--snapshot-ensemble", "--label-smoothing", "0.1"],
    "muon-multistep": ["--recipe", "fast94-muon", "--widths", "8,16,16", "--whiten-samples", "64",
                       "--schedule", "multistep_lr", "--base-lr", "0.05", "--milestones", "1ep", "--tta", "none"],
    "cyclic-knots": ["--schedule", "piecewise_linear", "--knots", "0:0,1ep:0.2,2ep:0", "--warmup", "3",
                     "--warmup-mode", "constant", "--no-flip", "--pad-mode", "zeros"],
}


@pytest.fixture
def npz_dataset(real_cifar10):
    """The CLI reads real, full-size CIFAR-10 files only; subsets keep the runs short."""
    return real_cifar10.origin


def _per_step_lr(flags: list[str]) -> torch.Tensor:
    settings = settings_from_flags(flags)
    spe = max(1, (settings.options.train_subset or CIFAR10_TRAIN_IMAGES) // settings.recipe.train.batch_size)
    return settings.recipe.schedule.build(settings.recipe.train.total_steps(spe), spe).lr


@pytest.mark.parametrize("name", list(FLAG_SETS))
def test_a_record_rebuilds_the_same_run(name, npz_dataset, tmp_path):
    flags = [*TINY, "--target", "0.05", *FLAG_SETS[name], "--data-dir", str(npz_dataset)]
    first = tmp_path / "first.json"
    assert main([*flags, "--out", str(first)]) == 0
    again = tmp_path / "again.json"
    rebuilt = ["--recipe-from", str(first), "--device", "cpu"]
    assert main([*rebuilt, "--out", str(again)]) == 0
    a, b = (json.loads(p.read_text()) for p in (first, again))
    assert b["config"]["recipe"] == a["config"]["recipe"]
    for key in ("train_subset", "test_subset", "target", "seed", "data_dir", "compile"):
        assert b["config"]["harness"][key] == a["config"]["harness"][key], key
    assert (b["target"], b["dataset"]) == (a["target"], a["dataset"])
    assert b["schedule"] == a["schedule"]
    run_a, run_b = a["runs"][0], b["runs"][0]
    assert [e["train_loss"] for e in run_b["epochs"]] == [e["train_loss"] for e in run_a["epochs"]]
    assert [e["test_acc"] for e in run_b["epochs"]] == [e["test_acc"] for e in run_a["epochs"]]
    assert torch.equal(_per_step_lr([*rebuilt]), _per_step_lr(flags))


def test_flags_still_override_a_rebuilt_record(npz_dataset, tmp_path):
    first = tmp_path / "first.json"
    assert main([*TINY, "--target", "0.05", "--data-dir", str(npz_dataset), *FLAG_SETS["cosine-warmup"],
                 "--out", str(first)]) == 0
    settings = settings_from_flags(["--recipe-from", str(first), "--target", "0.5", "--eta-min", "0.01"])
    assert settings.options.target == 0.5 and settings.options.train_subset == 512
    assert settings.recipe.schedule.eta_min == 0.01 and settings.recipe.schedule.warmup == "1ep"
