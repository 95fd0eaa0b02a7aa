"""The copy's calibrated targets are what the committed calibration records give by the stated rule."""
import dataclasses
from pathlib import Path

import pytest

from speedrun.data.cifar10 import SOURCE_JPEG_COPY
from speedrun.recipes import fast94, fast94_muon, fast94_record, get_recipe
from speedrun.recipes.base import Recipe, calibration_rule
from speedrun.results.records import read_record
from speedrun.results.run_values import finished_runs

CALIBRATION = Path(__file__).resolve().parents[2] / "results" / "calibration"


def calibration_records(recipe: str) -> list[tuple[Path, dict]]:
    """Full-budget records of ``recipe`` on the JPEG-q75 copy, the whole test set, every epoch trained."""
    found = []
    for path in sorted(CALIBRATION.glob("*.json")):
        record = read_record(path)
        harness = record["config"]["harness"]
        if (record["recipe"] == recipe and record["dataset"]["name"] == SOURCE_JPEG_COPY
                and record["dataset"]["test_size"] == 10000 and harness.get("train_subset") is None
                and record["config"]["recipe"]["train"]["stop_at_target"] is False):
            found.append((path, record))
    return found


@pytest.mark.parametrize("recipe, calibrated", [("fast94", fast94.JPEG_COPY_TARGET),
                                                ("fast94-muon", fast94_muon.JPEG_COPY_TARGET),
                                                ("fast94-record", fast94_record.JPEG_COPY_TARGET)])
def test_a_copy_target_is_the_rule_applied_to_its_calibration_records(recipe, calibrated):
    records = calibration_records(recipe)
    if not records:
        pytest.skip(f"no calibration records under {CALIBRATION}")
    accuracies = [run["final_test_acc"] for _, record in records for run in finished_runs(record["runs"])]
    assert accuracies, "the calibration records hold no finished run"
    assert calibrated.target == calibration_rule(accuracies)
    for path, _ in records:
        assert path.name in calibrated.evidence, f"the evidence does not name {path.name}"
    choice = get_recipe(recipe).target_for(SOURCE_JPEG_COPY)
    assert choice.target == calibrated.target and calibrated.evidence in choice.source


def _as_trained(recipe: Recipe) -> Recipe:
    """What decides a run's accuracy: the recipe less its words, its targets and the full-budget switches."""
    train = dataclasses.replace(recipe.train, eval_every=1, stop_at_target=False)
    return recipe.replace(description="", target=0.0, calibrated_targets=(), train=train)


@pytest.mark.parametrize("recipe", ["fast94", "fast94-muon", "fast94-record"])
def test_the_calibration_records_trained_the_recipe_as_it_is_now(recipe):
    """A recipe changed after its calibration needs new records: old ones would calibrate another recipe."""
    records = calibration_records(recipe)
    if not records:
        pytest.skip(f"no calibration records under {CALIBRATION}")
    for path, record in records:
        trained = Recipe.from_dict(record["config"]["recipe"])
        assert _as_trained(trained) == _as_trained(get_recipe(recipe)), f"{path.name} trained another {recipe}"


@pytest.mark.parametrize("accuracies,target", [([0.9065], 0.900), ([0.9100], 0.905), ([0.9099], 0.900),
                                               ([0.93, 0.95], 0.935)])
def test_the_rule_is_the_mean_less_half_a_point_rounded_down_to_half_a_point(accuracies, target):
    assert calibration_rule(accuracies) == target
