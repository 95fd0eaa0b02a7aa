"""What a sweep refuses before Ray starts: too many runs, a folder another spec made (naming the
setting that differs), a foreign record where a variant's goes, data that cannot be read,
abbreviated flags, a tuning seed among the reported ones; and every bad variant at once. Ray is
never started here (starting it fails)."""
from __future__ import annotations

import json

import pytest

from speedrun.errors import SpeedrunError
from speedrun.sweeps import sweep as sweep_module
from speedrun.sweeps.plan import arms, check_flags
from speedrun.sweeps.spec import SpecError, parse_spec
from speedrun.sweeps.store import SweepFolder
from speedrun.sweeps.sweep import SweepOptions, owner_table, planned_run_count, run_sweep
from tests.support.synthetic import make_synthetic

BASE = {"recipe": "classic", "epochs": 1, "width": 0.125, "batch-size": 64, "no-compile": True, "target": 0.2}


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("Ray was started before the refusal")
    monkeypatch.setattr(sweep_module, "ray_cluster", refuse)


class RayWouldStart(Exception):
    pass


@pytest.fixture
def ray_would_start(monkeypatch):
    def reached(*args, **kwargs):
        raise RayWouldStart
    monkeypatch.setattr(sweep_module, "ray_cluster", reached)


def _spec(**extra):
    return parse_spec({"name": "s", "seeds": 2, "base": BASE, **extra}, source="s.toml")


@pytest.mark.parametrize("extra", [
    {},
    {"variants": {"a": {"max-lr": 0.3}, "b": {"max-lr": 0.5}}},
    {"variants": {"a": {}}, "grid": {"batch-size": [32, 64], "cutout": [0, 4, 8]}},
])
def test_the_run_count_is_counted_without_expanding_the_spec(extra):
    spec = _spec(**extra)
    assert planned_run_count(spec) == len(arms(spec)) * len(spec.seeds)


def test_a_spec_of_too_many_runs_is_refused_before_anything(no_ray, tmp_path):
    grid = {"batch-size": list(range(32, 132)), "cutout": list(range(0, 100)), "crop-padding": list(range(0, 100))}
    spec = _spec(variants={"a": {}}, grid=grid)          # 10^6 grid points x 2 seeds
    with pytest.raises(SpeedrunError, match=r"plans 2,000,000 runs, more than --max-runs 10,000"):
        run_sweep(spec, SweepOptions(str(tmp_path / "out")), data=make_synthetic(train=256, test=64))
    assert not (tmp_path / "out").exists()


def test_a_foreign_record_where_a_variant_goes_is_refused_before_any_run(no_ray, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "base.json"
    foreign.write_text(json.dumps({"not": "this sweep's"}))
    with pytest.raises(SpeedrunError, match=r"holds base\.json but no sweep\.json: it is not a sweep's folder"):
        run_sweep(_spec(), SweepOptions(str(out)), data=make_synthetic(train=256, test=64))
    assert foreign.read_text() == json.dumps({"not": "this sweep's"})


def test_missing_data_is_refused_before_ray_starts(no_ray, tmp_path):
    spec = parse_spec({"name": "s", "seeds": 1, "base": {**BASE, "data-dir": str(tmp_path / "nowhere"),
                                                          "no-download": True}}, source="s.toml")
    with pytest.raises(SpeedrunError, match="nowhere"):
        run_sweep(spec, SweepOptions(str(tmp_path / "out")))


@pytest.mark.parametrize("key", ["ou", "see", "devic", "epoch"])
def test_an_abbreviated_flag_in_a_spec_is_refused(no_ray, key, tmp_path):
    with pytest.raises(SpeedrunError, match=f"--{key}"):
        run_sweep(_spec(variants={"a": {key: 1}}), SweepOptions(str(tmp_path / "out")),
                  data=make_synthetic(train=256, test=64))


def _made_by(spec, out):
    all_arms = arms(spec)
    SweepFolder(out).claim(spec.name, spec.source, owner_table(all_arms, check_flags(spec, all_arms)))


TWO = {"a": {"schedule": "one_cycle_lr", "max-lr": 0.3}, "b": {"schedule": "step_lr", "base-lr": 0.1, "step-size": 1}}


@pytest.mark.parametrize("variants, says", [
    ({**TWO, "a": {"schedule": "one_cycle_lr", "max-lr": 0.5}}, "variant 'a': recipe.schedule.max_lr was 0.3 there, 0.5 here"),
    ({**TWO, "c": {}}, "variant 'c' is not one of its variants (a, b)"),
    ({"a": TWO["a"]}, "its variant 'b' is not in this spec"),
    ({**TWO, "b": {**TWO["b"], "cutout": 4}}, "variant 'b': recipe.augment.cutout_size was 8 there, 4 here"),
])
def test_a_folder_made_by_another_spec_is_refused_naming_what_differs(no_ray, tmp_path, variants, says):
    out = tmp_path / "out"
    _made_by(_spec(variants=TWO), out)
    owner = (out / "sweep.json").read_text()
    with pytest.raises(SpeedrunError, match="was made by another spec") as refused:
        run_sweep(_spec(variants=variants), SweepOptions(str(out)), data=make_synthetic(train=256, test=64))
    assert says in str(refused.value)
    assert (out / "sweep.json").read_text() == owner and sorted(p.name for p in out.iterdir()) == ["sweep.json"]


def test_the_same_settings_in_other_words_and_more_seeds_are_the_same_spec(ray_would_start, tmp_path):
    out = tmp_path / "out"
    grid = {"batch-size": [32, 64]}
    _made_by(parse_spec({"name": "s", "seeds": 2, "base": {**BASE, "batch-size": 128}, "variants": TWO, "grid": grid},
                        source="s.toml"), out)
    # Without the base's batch size (the grid overrides it), the same rate written another way, more seeds.
    same = {**TWO, "a": {"schedule": "one_cycle_lr", "max-lr": "3e-1"}}
    with pytest.raises(RayWouldStart):
        run_sweep(parse_spec({"name": "s", "seeds": 5, "base": BASE, "variants": same, "grid": grid}, source="s.toml"),
                  SweepOptions(str(out)), data=make_synthetic(train=256, test=64))


def test_a_tuning_seed_among_the_reported_seeds_is_refused():
    with pytest.raises(SpecError, match=r"\[tune\] seed 0 is one of the sweep's seeds"):
        parse_spec({"seeds": 2, "tune": {"trials": 2, "seed": 0},
                    "variants": {"a": {"search": {"max-lr": {"low": 0.1, "high": 1.0}}}}})


def test_every_bad_variant_is_named_at_once(no_ray, tmp_path):
    spec = _spec(variants={"a": {"epochs": "x"}, "b": {"max-lr": 0.3}, "c": {"bogus": 1}})
    with pytest.raises(SpecError) as refused:
        run_sweep(spec, SweepOptions(str(tmp_path / "out")), data=make_synthetic(train=256, test=64))
    text = str(refused.value)
    assert "(2 problems)" in text and "variant 'a'" in text and "variant 'c'" in text and "'b'" not in text
    assert "\n" not in text


def test_grace_epochs_that_leave_no_epoch_to_stop_at_are_refused(no_ray, tmp_path):
    spec = parse_spec({"name": "s", "seeds": 1, "base": {**BASE, "epochs": 3},
                       "variants": {"a": {"search": {"max-lr": {"low": 0.1, "high": 1.0}}}},
                       "tune": {"trials": 2, "early-stop": True, "grace-epochs": 3}}, source="s.toml")
    with pytest.raises(SpecError, match=r"s.toml: \[tune\] grace-epochs 3 leaves no epoch to stop variant 'a' at \(it trains 3\)"):
        run_sweep(spec, SweepOptions(str(tmp_path / "out")), data=make_synthetic(train=256, test=64))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("gpus, size, shared", [(0, 1, False), (0, 2, True), (4, 4, False)])
def test_times_count_as_shared_only_where_runs_share_the_cpus(gpus, size, shared):
    from speedrun.sweeps.execution import Cluster
    assert Cluster(gpus, size).concurrent_times is shared
