"""Recipes: which target a run aims for on which copy of the data, and why."""
import pytest

from speedrun.data.cifar10 import SOURCE_JPEG_COPY, SOURCE_OFFICIAL
from speedrun.recipes import CLASSIC, CalibratedTarget

CALIBRATED = CLASSIC.replace(calibrated_targets=(CalibratedTarget(SOURCE_JPEG_COPY, 0.91, "record X, rule Y"),))


def test_the_given_target_wins_everywhere():
    for dataset in (SOURCE_OFFICIAL, SOURCE_JPEG_COPY, "synthetic"):
        choice = CALIBRATED.target_for(dataset, given=0.5)
        assert (choice.target, choice.source) == (0.5, "given (--target)")


def test_on_cifar10_the_recipe_aims_for_its_own_target():
    choice = CALIBRATED.target_for(SOURCE_OFFICIAL)
    assert choice.target == 0.94 and SOURCE_OFFICIAL in choice.source


def test_on_a_calibrated_copy_the_calibrated_target_is_used_with_its_evidence():
    choice = CALIBRATED.target_for(SOURCE_JPEG_COPY)
    assert choice.target == 0.91
    assert choice.source == f"calibrated on {SOURCE_JPEG_COPY}: record X, rule Y"


def test_elsewhere_the_cifar10_target_is_used_and_said_to_be_uncalibrated():
    choice = CLASSIC.target_for(SOURCE_JPEG_COPY)
    assert choice.target == 0.94 and choice.source.startswith("not calibrated on") and "--target" in choice.source


def test_a_calibrated_target_must_be_an_accuracy():
    with pytest.raises(ValueError, match="accuracy"):
        CalibratedTarget(SOURCE_JPEG_COPY, 94.0, "percent by mistake")


def _every_recipe():
    import dataclasses

    from speedrun.extensions.plateau import PlateauConfig
    from speedrun.extensions.snapshots import SnapshotEnsembleConfig
    from speedrun.extensions.swa import SWAConfig
    from speedrun.recipes import RECIPES
    from speedrun.recipes.fast94 import fast_recipe_ablations

    recipes = list(RECIPES.values()) + list(fast_recipe_ablations().values())
    classic = RECIPES["classic"]
    recipes.append(classic.replace(name="with-everything", extensions=(
        SWAConfig(epochs=2, swa_lr=0.05), SnapshotEnsembleConfig(cycle_end_epochs=(3, 8)), PlateauConfig(patience=2))))
    recipes.append(classic.replace(train=dataclasses.replace(classic.train, epochs=3, stop_at_target=False)))
    return recipes


@pytest.mark.parametrize("recipe", _every_recipe(), ids=lambda r: r.name)
def test_a_recipe_is_rebuilt_exactly_from_its_record(recipe):
    import json

    from speedrun.recipes import Recipe

    stored = json.loads(json.dumps(recipe.to_dict()))       # what a record holds
    rebuilt = Recipe.from_dict(stored)
    assert rebuilt == recipe
    assert json.loads(json.dumps(rebuilt.to_dict())) == stored


def test_an_unknown_config_type_in_a_record_is_named():
    from speedrun.recipes import Recipe

    stored = CLASSIC.to_dict()
    stored["model"]["type"] = "VisionTransformerConfig"
    with pytest.raises(ValueError, match="unknown model config type 'VisionTransformerConfig'"):
        Recipe.from_dict(stored)


def test_a_rebuilt_recipe_trains_the_same_run(make_synthetic_cifar10):
    import dataclasses

    from speedrun.bench.harness import HarnessOptions, run_benchmark
    from speedrun.recipes import Recipe, get_recipe

    fast = get_recipe("fast94")
    tiny = fast.replace(model=dataclasses.replace(fast.model, widths=(8, 16, 16), whiten_samples=64),
                        train=dataclasses.replace(fast.train, epochs=2, batch_size=32, eval_every=1))
    data = make_synthetic_cifar10(train=96, test=32)
    first = run_benchmark(tiny, HarnessOptions(out=None, target=0.5), data=data, log=lambda _: None)
    again = run_benchmark(Recipe.from_dict(first["config"]["recipe"]), HarnessOptions(out=None, target=0.5),
                          data=data, log=lambda _: None)
    assert [e["train_loss"] for e in again["runs"][0]["epochs"]] == [e["train_loss"] for e in first["runs"][0]["epochs"]]
