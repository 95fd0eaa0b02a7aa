"""Reading a sweep spec: what it gives, and every malformed spec refused in one line."""
from __future__ import annotations

import pytest

from speedrun.sweeps.spec import SpecError, load_spec, parse_spec

GOOD = """
name = "policies"
seeds = 3
baseline = "step"

[base]
recipe = "classic"
full-budget = true
no-compile = true

[variants.step]
schedule = "step_lr"
base-lr = 0.1

[variants.one-cycle]
schedule = "one_cycle_lr"
max-lr = 0.4

[variants.one-cycle.search]
max-lr = { low = 0.05, high = 2.0, log = true }
batch-size = { choices = [256, 512] }

[grid]
epochs = [2, 4]

[tune]
trials = 4
"""


def write(tmp_path, text: str):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_a_spec_gives_its_seeds_base_variants_grid_and_tuning(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "policies" and spec.seeds == (0, 1, 2) and spec.baseline == "step"
    assert spec.base == {"recipe": "classic", "full-budget": True, "no-compile": True}
    assert [v.name for v in spec.variants] == ["step", "one-cycle"], "the spec's order"
    assert spec.variants[1].flags == {"schedule": "one_cycle_lr", "max-lr": 0.4}
    dims = {d.flag: d for d in spec.variants[1].search}
    assert dims["max-lr"].log and (dims["max-lr"].low, dims["max-lr"].high) == (0.05, 2.0)
    assert dims["batch-size"].choices == (256, 512)
    assert spec.grid == {"epochs": (2, 4)} and spec.tune is not None and spec.tune.trials == 4


def test_no_variants_means_the_base_alone_and_seeds_may_be_listed():
    spec = parse_spec({"seeds": [3, 7], "base": {"recipe": "fast94"}})
    assert [v.name for v in spec.variants] == ["base"] and spec.seeds == (3, 7)


@pytest.mark.parametrize("text, says", [
    ("seeds = 0", "seeds must be at least 1"),
    ("seeds = [1, 1]", "lists a seed twice"),
    ("colour = 1", "'colour' is not a spec key"),
    ("[base]\nseed = 3", "set by the sweep itself"),
    ("[base]\nout = 'x'", "set by the sweep itself"),
    ("[base]\nepochs = {a = 1}", "is a table, not a flag's value"),
    ("[base]\nepochs = 2020-01-01", "must be a string, a number"),
    ("[variants.lr-0.2]\nmax-lr = 0.2", '[variants.lr-0] 2 is a table, not a flag\'s value; a name with a dot needs quotes'),
    ("[variants]", "[variants] is empty"),
    ("[variants.a]\nx = 1\n[variants.a]\ny = 2", "not valid TOML"),     # a variant named twice
    ("[variants.'a b']\nx = 1", "needs a plain name"),
    ("[grid]\nepochs = []", "must be a non-empty list"),
    ("[grid]\nepochs = 2", "must be a non-empty list"),
    ("[grid]\nepochs = [2, 2]", "lists a value twice"),
    ("baseline = 'nope'\n[variants.a]\nx = 1", "'nope' is not a variant"),
    ("[variants.a.search]\nmax-lr = {low = 1, high = 2}", "needs a [tune] table"),
    ("[tune]\ntrials = 2\n[variants.a]\nx = 1", "has no search space"),
    ("[tune]\ntrials = 0\n[variants.a.search]\nm = {low = 1, high = 2}", "trials must be a whole number"),
    ("[tune]\ntrials = 1\nsampler = 'grid'\n[variants.a.search]\nm = {low = 1, high = 2}", "sampler must be one of"),
    ("[tune]\ntrials = 1\n[variants.a.search]\nm = {low = 2, high = 1}", "needs low < high"),
    ("[tune]\ntrials = 1\n[variants.a.search]\nm = {low = 0, high = 1, log = true}", "a log range needs low > 0"),
    ("[tune]\ntrials = 1\n[variants.a.search]\nm = {low = 0, high = 1, step = 2}", "unknown key 'step'"),
    ("[tune]\ntrials = 1\n[variants.a.search]\nm = {choices = []}", "choices must be a non-empty list"),
    ("[tune]\ntrials = 2\nreduction-factor = 1\n[variants.a.search]\nm = {low = 1, high = 2}", "reduction-factor must be"),
    ("[tune]\ntrials = 2\ngrace-epochs = 0\n[variants.a.search]\nm = {low = 1, high = 2}", "grace-epochs must be"),
    ("[tune]\ntrials = 2\nearly-stop = 'yes'\n[variants.a.search]\nm = {low = 1, high = 2}", "early-stop"),
    ("[tune]\ntrials = 2\npatience = 2\n[variants.a.search]\nm = {low = 1, high = 2}", "patience"),
])
def test_a_malformed_spec_is_one_line_naming_the_spec_and_the_place(tmp_path, text, says):
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    message = str(caught.value)
    assert says in message and "\n" not in message and str(tmp_path / "spec.toml") in message


def test_the_early_stopping_keys_are_read():
    spec = parse_spec({"base": {}, "variants": {"a": {"search": {"max-lr": {"low": 0.1, "high": 1.0}}}},
                       "tune": {"trials": 6, "early-stop": True, "grace-epochs": 2, "reduction-factor": 3}})
    assert spec.tune is not None and (spec.tune.early_stop, spec.tune.grace_epochs, spec.tune.reduction_factor) == (True, 2, 3)


def test_a_missing_spec_says_so(tmp_path):
    with pytest.raises(SpecError, match="no such sweep spec"):
        load_spec(tmp_path / "absent.toml")
