"""The harness end to end on a simulated H200: device choice, the data on the device, the
rehearsal, two seeded runs of each recipe's whole budget with the NVML thread, the record.

And with an NVML query that fails (power is "Not Supported" on some GPUs): the runs complete,
the record names the missing field and why, and NVML is shut down once per init.
"""
from __future__ import annotations

import pytest

from speedrun.recipes import RECIPES


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_the_harness_writes_a_complete_record_on_simulated_cuda(simulate, recipe):
    result = simulate("harness", "")
    outcome = result["configs"][recipe]
    assert outcome["ok"], f"{outcome['error']} at {outcome['where']}: {outcome['message']}"
    assert outcome["complete"] and outcome["runs"] == 2
    assert outcome["device"] == "cuda" and "H200" in outcome["gpu"] and outcome["driver"]
    assert all(n["available"] and not n["missing"] for n in outcome["nvml"])
    assert outcome["record_nvml"] == {"available": True, "reason": None, "missing": {}}
    reads = outcome["host_reads"]
    assert reads.pop("training/trainer.py:read_epoch") == sum(outcome["epochs"])   # one read an epoch
    assert set(reads) <= {"bench/harness.py:schedule_record"}                      # after a run, untimed
    assert result["nvml_init"] == result["nvml_shutdown"] and result["nvml_refcount"] == 0


@pytest.mark.parametrize("query, field", [("nvmlDeviceGetPowerUsage", "power_w"),
                                          ("nvmlDeviceGetUtilizationRates", "gpu_util_pct")])
def test_a_failing_nvml_query_loses_only_its_field(simulate, query, field):
    result = simulate("harness", query, "fast94")
    outcome = result["configs"]["fast94"]
    assert outcome["ok"] and outcome["complete"]
    for nvml in outcome["nvml"]:
        assert nvml["available"] and set(nvml["missing"]) == {field}
        assert "Not Supported" in nvml["missing"][field]
    assert set(outcome["record_nvml"]["missing"]) == {field}         # and the record says so at its top
    assert result["nvml_init"] == result["nvml_shutdown"]
