"""The FLOP estimate: airbench's published counts, what autograd skips, Muon's products, the budget's scaling."""
from __future__ import annotations

import dataclasses
import math

import pytest

from speedrun.analysis.flops import estimate_flops, evaluations, optimizer_step_flops
from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.cli import main
from speedrun.recipes import RECIPES, get_recipe
from speedrun.recipes.fast94 import fast94_recipe
from speedrun.recipes.fast94_muon import fast94_muon_recipe
from tests.support.fast94 import tiny


@pytest.mark.parametrize("recipe, published", [(fast94_recipe(), 0.36e15), (fast94_muon_recipe(), 0.29e15)])
def test_the_fast_recipes_match_airbench_s_published_counts(recipe, published):
    # airbench94's header: 0.36 PFLOP a run; airbench94_muon's: 0.29 (the same nets, budgets and TTA)
    assert estimate_flops(recipe).total_flops == pytest.approx(published, rel=0.05)


def test_a_frozen_stem_bias_saves_exactly_the_first_convolution_s_input_gradient():
    recipe = fast94_recipe()
    frozen = recipe.replace(model=dataclasses.replace(recipe.model, whiten_bias_trainable=False))
    saved = estimate_flops(recipe).train_step_flops - estimate_flops(frozen).train_step_flops
    batch, side = recipe.train.batch_size, 32 - recipe.model.whiten_patch + 1
    c_in, c_out = recipe.model.stem_width, recipe.model.widths[0]
    assert saved == 2 * batch * side * side * c_in * c_out * 9      # block1.conv1's dgrad, nothing else


def newton_schulz_flops(rows: int, cols: int, steps: int) -> int:
    m, n = min(rows, cols), max(rows, cols)
    return steps * (2 * m * m * n + 2 * m * m * m + 2 * m * m * n)   # gram, gram @ gram, (...) @ x


def test_muon_s_step_costs_its_newton_schulz_products_and_sgd_s_nothing():
    recipe = tiny(fast94_muon_recipe(batch_size=32))
    widths, stem = recipe.model.widths, recipe.model.stem_width
    shapes = [(widths[0], stem), (widths[0], widths[0]), (widths[1], widths[0]), (widths[1], widths[1]),
              (widths[2], widths[1]), (widths[2], widths[2])]
    steps = recipe.optimizer.newton_schulz_steps
    assert optimizer_step_flops(recipe) == sum(newton_schulz_flops(o, i * 9, steps) for o, i in shapes)
    assert optimizer_step_flops(tiny(fast94_recipe())) == 0


def test_the_estimate_scales_with_the_budget_and_the_views():
    recipe = fast94_recipe()
    base = estimate_flops(recipe)
    longer = estimate_flops(recipe.replace(train=dataclasses.replace(recipe.train, epochs=20, eval_every=5)))
    plain = estimate_flops(recipe.replace(train=dataclasses.replace(recipe.train, tta="none")))
    assert longer.train_flops == 2 * base.train_flops and longer.eval_flops == 4 * base.eval_flops
    assert base.eval_flops == 6 * plain.eval_flops, "multi-view TTA: 6 views"
    assert base.steps == (50000 // 1024) * 10
    half = estimate_flops(recipe, train_images=25000, test_images=5000)
    assert half.steps == (25000 // 1024) * 10 and half.eval_flops == base.eval_flops / 2
    assert math.isclose(base.total_flops, base.train_flops + base.eval_flops)


@pytest.mark.parametrize("epochs, every, expected", [(10, 10, 1), (10, 1, 10), (10, 3, 4), (24, 5, 5), (1, 4, 1)])
def test_evaluations_are_every_kth_epoch_and_the_last(epochs, every, expected):
    assert evaluations(epochs, every) == expected


def test_a_batch_larger_than_the_data_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        estimate_flops(fast94_recipe(), train_images=512)


def test_every_record_holds_the_estimate_for_its_own_data(make_synthetic_cifar10):
    recipe = tiny(fast94_recipe(batch_size=32))
    record = run_benchmark(recipe, HarnessOptions(device="cpu", compile=False, out=None),
                           data=make_synthetic_cifar10(train=64, test=32), log=lambda _: None, command=[])
    expected = estimate_flops(recipe, train_images=64, test_images=32)
    assert record["flops"] == expected.to_dict()
    assert record["flops"]["steps"] == 2 and record["flops"]["eval_images"] == 32 * 6


def test_the_flops_command_prints_every_recipe_or_the_one_named(capsys):
    assert main(["flops"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(RECIPES) == ["classic", "fast94", "fast94-muon", "fast94-record", "assignment"]
    assert main(["flops", "--recipe", "fast94", "--epochs", "20"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("fast94: 0.72") and "960 steps" in line


def test_fast94_record_costs_under_0_28_pflop_and_saves_where_its_changes_say():
    """Fewer images (1536 x 7.59 epochs against 2000 x 8) and selective TTA's fewer views; SiLU,
    jitter and the rest are elementwise, which the count leaves out, as airbench's does."""
    muon, record = estimate_flops(fast94_muon_recipe()), estimate_flops(get_recipe("fast94-record"))
    assert record.total_flops <= 0.28e15 < muon.total_flops
    assert record.train_step_flops / 1536 == pytest.approx(muon.train_step_flops / 2000, rel=0.01), "same net per image"
    assert record.eval_flops < muon.eval_flops / 3, "selective TTA: every view for a tenth of the images only"
