"""A spec expanded into runs: stable ids, the grid crossed with the variants, flags checked."""
from __future__ import annotations

import pytest

from speedrun.sweeps.plan import arms, check_flags, flag_words, planned_runs
from speedrun.sweeps.spec import SpecError, parse_spec


def test_spec_values_become_the_words_of_a_command_line():
    assert flag_words({"full-budget": True, "compile": False, "no-compile": False, "epochs": 2,
                       "max-lr": 0.4, "schedule": "one_cycle_lr"}) == [
        "--full-budget", "--no-compile", "--compile", "--epochs", "2", "--max-lr", "0.4",
        "--schedule", "one_cycle_lr"]
    assert flag_words({"widths": (8, 16)}) == ["--widths", "8", "16"]


def test_the_grid_is_crossed_with_every_variant_and_the_ids_are_stable():
    spec = parse_spec({"seeds": 2, "base": {"recipe": "classic"},
                       "variants": {"a": {"max-lr": 0.4}, "b": {"base-lr": 0.1}},
                       "grid": {"batch-size": [256, 512]}})
    labels = [arm.label for arm in arms(spec)]
    assert labels == ["a@batch-size=256", "a@batch-size=512", "b@batch-size=256", "b@batch-size=512"]
    first = arms(spec)[1]
    assert first.flags == ("--recipe", "classic", "--batch-size", "512", "--max-lr", "0.4"), \
        "base, then the grid point, then the variant's own (the last word wins)"
    runs = planned_runs(first, spec.seeds)
    assert [r.run_id for r in runs] == ["a@batch-size=512/seed-0", "a@batch-size=512/seed-1"]
    assert runs[1].seed == 1 and runs[1].flags == first.flags
    assert [r.run_id for r in planned_runs(arms(spec)[1], spec.seeds)] == [r.run_id for r in runs]


@pytest.mark.parametrize("variant, says", [
    ({"bogus-flag": 1}, "unrecognized arguments: --bogus-flag"),
    ({"epochs": "many"}, "argument --epochs: 'many' is not a number"),
    ({"momentum": 2.0}, "--momentum: must be a finite number >= 0 and < 1"),
    ({"schedule": "nope"}, "--schedule: must be one of"),
])
def test_every_runs_flags_are_checked_as_the_train_command_would(variant, says):
    spec = parse_spec({"base": {"recipe": "classic"}, "variants": {"ok": {}, "bad": variant}}, source="s.toml")
    with pytest.raises(SpecError) as caught:
        check_flags(spec, arms(spec))
    assert "s.toml: variant 'bad'" in str(caught.value) and says in str(caught.value)


def test_a_tuned_variant_is_checked_at_a_point_of_its_search_space():
    spec = parse_spec({"base": {"recipe": "classic"}, "tune": {"trials": 1},
                       "variants": {"t": {"search": {"momentum": {"low": 1.5, "high": 3.0}}}}}, source="s.toml")
    with pytest.raises(SpecError, match=r"with a point of its search space.*--momentum"):
        check_flags(spec, arms(spec))


@pytest.mark.parametrize("name", ["policies.toml", "policies-tuned.toml"])
def test_the_committed_policy_specs_read_and_every_run_of_them_parses(name):
    from pathlib import Path

    from speedrun.sweeps.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "results" / "sweeps" / name)
    check_flags(spec, arms(spec))
    assert spec.baseline == "multistep" and len(spec.seeds) == 5
