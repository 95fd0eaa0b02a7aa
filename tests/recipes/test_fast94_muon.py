"""The fast94-muon recipe: airbench94_muon's rates in this loop's conventions, and it learns."""
from __future__ import annotations

import pytest

from speedrun.bench.harness import HarnessOptions, run_benchmark
from speedrun.recipes import get_recipe
from speedrun.recipes.fast94_muon import fast94_muon_recipe
from tests.support.fast94 import assert_muon_recipe_rates, tiny


def test_the_sgd_groups_take_airbench_rates_and_decay_per_summed_loss(make_synthetic_cifar10):
    for batch in (2000, 500):
        assert_muon_recipe_rates(fast94_muon_recipe(batch_size=batch), make_synthetic_cifar10(), peak=0.24,
                                 bias=0.053, head=0.67, decay=2e-6)


def test_it_is_registered_and_rebuilds_from_its_record_form():
    recipe = get_recipe("fast94-muon")
    assert recipe == fast94_muon_recipe()
    assert type(recipe).from_dict(recipe.to_dict()) == recipe


def test_fast94_muon_learns_a_small_problem_through_the_harness(make_synthetic_cifar10):
    recipe = tiny(fast94_muon_recipe(batch_size=32), batch_size=32, epochs=4, widths=(16, 32, 32))
    record = run_benchmark(recipe, HarnessOptions(device="cpu", compile=False, out=None, target=0.99),
                           data=make_synthetic_cifar10(train=256, test=64), log=lambda _: None, command=[])
    (run,) = record["runs"]
    assert run["status"] == "ok"
    assert run["final_test_acc"] >= 0.5, run["final_test_acc"]   # chance 0.1; data seeds 0-2 gave 0.97-1.0


def test_bad_batch_size_is_refused_by_name():
    with pytest.raises(ValueError, match="batch_size"):
        fast94_muon_recipe(batch_size=0)
