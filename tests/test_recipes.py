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
