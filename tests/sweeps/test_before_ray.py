"""What a sweep refuses before Ray starts: too many runs, a foreign record where a variant's goes,
data that cannot be read, and abbreviated flags. Ray is never started here (starting it fails)."""
from __future__ import annotations

import json

import pytest

from speedrun.errors import SpeedrunError
from speedrun.sweeps import sweep as sweep_module
from speedrun.sweeps.plan import arms
from speedrun.sweeps.spec import parse_spec
from speedrun.sweeps.sweep import SweepOptions, planned_run_count, run_sweep
from tests.support.synthetic import make_synthetic

BASE = {"recipe": "classic", "epochs": 1, "width": 0.125, "batch-size": 64, "no-compile": True, "target": 0.2}


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("Ray was started before the refusal")
    monkeypatch.setattr(sweep_module, "RunPool", refuse)


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
    with pytest.raises(SpeedrunError, match=r"base\.json exists and is not this sweep.s record"):
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
