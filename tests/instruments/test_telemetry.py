"""NvmlSampler against the stand-in pynvml (tests/support/nvml_standin.py): a failing query costs its field only.

No GPU is needed: the sampler only reads ``device.type`` and ``device.index``, and building
``torch.device("cuda", 0)`` does not touch CUDA. Sampling runs every 5 ms and each test waits
for a few samples with a timeout, never a fixed sleep.
"""
from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable

import pytest
import torch

from speedrun.bench.harness import summarize_run_dicts
from speedrun.instruments.telemetry import SAMPLE_FIELDS, NvmlSampler
from tests.support import nvml_standin
from tests.support.nvml_standin import StandinNvml, installed, make_pynvml

CUDA0 = torch.device("cuda", 0)
QUERY_FUNCTIONS = ("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetClockInfo")
EXPECTED = {  # what the stand-in's readings become, per field
    "gpu_util_pct": float(nvml_standin.GPU_UTIL_PCT),
    "mem_used_mib": nvml_standin.MEM_USED_BYTES / 2**20,
    "power_w": nvml_standin.POWER_MILLIWATTS / 1000,
    "sm_clock_mhz": float(nvml_standin.CLOCK_MHZ[nvml_standin.NVML_CLOCK_SM]),
}
NOT_SUPPORTED = "NVMLError: Not Supported"


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the sampler"
        time.sleep(0.002)


def make_sampler(nvml: StandinNvml | None, device: torch.device = CUDA0) -> NvmlSampler:
    with installed(nvml):
        return NvmlSampler(device, interval_s=0.005)


def sample(sampler: NvmlSampler, n: int = 5) -> dict:
    """Start, wait for ``n`` samples, stop; the summary, checked to be valid JSON."""
    sampler.start()
    try:
        wait_until(lambda: len(sampler.samples) >= n)
    finally:
        sampler.stop()
    summary = sampler.summary()
    json.dumps(summary, allow_nan=False)   # a record is JSON: nulls are fine, NaN is not
    return summary


def assert_paired(nvml: StandinNvml, inits: int = 1) -> None:
    assert nvml.state.init_calls == inits and nvml.state.shutdown_calls == inits and nvml.state.refcount == 0


def test_all_queries_fine_means_off_the_main_thread_and_nvml_shut_down():
    nvml = make_pynvml()
    sampler = make_sampler(nvml)
    assert sampler.available and sampler.reason is None
    summary = sample(sampler)
    assert summary["available"] is True and summary["reason"] is None and summary["missing"] == {}
    assert summary["fields"] == list(SAMPLE_FIELDS)
    samples = summary["samples"]
    assert len(samples) >= 5 and all(len(s) == len(SAMPLE_FIELDS) and None not in s for s in samples)
    for name, value in EXPECTED.items():
        assert summary[name] == {"mean": pytest.approx(value), "max": pytest.approx(value), "n": len(samples)}
    main = threading.main_thread().ident
    for fn in QUERY_FUNCTIONS:
        threads = nvml.state.threads_of(fn)
        assert threads and main not in threads, f"{fn} should be called only from the sampling thread"
    assert_paired(nvml)


@pytest.mark.parametrize(("failing", "field"), list(zip(QUERY_FUNCTIONS, SAMPLE_FIELDS[1:])))
def test_one_failing_query_costs_only_its_field(failing, field):
    nvml = make_pynvml(fail={failing})
    sampler = make_sampler(nvml)
    summary = sample(sampler)   # reaching 5 samples is itself the proof that sampling went on
    column = SAMPLE_FIELDS.index(field)
    assert summary["available"] is True and summary["reason"] is None
    assert summary["missing"] == {field: NOT_SUPPORTED}
    assert field not in summary, "a field that never produced a value has no mean or max"
    samples = summary["samples"]
    assert all(s[column] is None for s in samples)
    for name, value in EXPECTED.items():
        if name != field:
            assert summary[name]["mean"] == pytest.approx(value) and summary[name]["n"] == len(samples)
    assert len(nvml.state.threads_of(failing)) == 1 and len([c for c in nvml.state.calls if c.name == failing]) >= 5
    assert_paired(nvml)


def test_every_query_failing_keeps_sampling_but_says_unavailable_with_the_reasons():
    nvml = make_pynvml(fail=QUERY_FUNCTIONS)
    sampler = make_sampler(nvml)
    summary = sample(sampler, n=3)
    assert len(sampler.samples) >= 3 and all(s[1:] == [None] * 4 for s in sampler.samples)
    assert summary["available"] is False and "samples" not in summary
    assert summary["missing"] == dict.fromkeys(SAMPLE_FIELDS[1:], NOT_SUPPORTED)
    assert summary["reason"].startswith("every NVML query failed")
    assert all(f"{name}: {NOT_SUPPORTED}" in summary["reason"] for name in SAMPLE_FIELDS[1:])
    assert not any(name in summary for name in SAMPLE_FIELDS[1:])
    assert_paired(nvml)


def test_init_failing_leaves_telemetry_unavailable_and_calls_no_shutdown():
    nvml = make_pynvml(fail={"nvmlInit"})
    sampler = make_sampler(nvml)
    assert not sampler.available and "nvmlInit" in sampler.reason and "Not Supported" in sampler.reason
    sampler.start()
    assert sampler._thread is None
    sampler.stop()
    summary = sampler.summary()
    assert summary["available"] is False and summary["reason"] == sampler.reason and "samples" not in summary
    assert sampler.driver_version() is None and sampler.driver_reason == sampler.reason
    assert nvml.state.init_calls == 1 and nvml.state.shutdown_calls == 0
    assert [c.name for c in nvml.state.calls] == ["nvmlInit"]


@pytest.mark.parametrize(("fail", "device"), [({"nvmlDeviceGetHandleByIndex"}, CUDA0), (set(), torch.device("cuda", 3))])
def test_a_failing_step_after_init_shuts_nvml_down_at_once(fail, device):
    nvml = make_pynvml(fail=fail)
    sampler = make_sampler(nvml, device)
    assert not sampler.available and "no handle for cuda:" in sampler.reason
    assert_paired(nvml)
    sampler.stop()
    assert_paired(nvml)


def test_no_pynvml_or_no_cuda_device_says_why():
    assert "NVML unavailable" in make_sampler(None).reason     # import pynvml fails
    cpu = make_sampler(make_pynvml(), torch.device("cpu"))
    assert cpu.summary()["available"] is False and "no CUDA" in cpu.summary()["reason"]


def test_driver_version_is_read_and_a_failure_gives_none_with_why():
    ok = make_sampler(make_pynvml())
    assert ok.driver_version() == nvml_standin.DRIVER_VERSION and ok.driver_reason is None
    ok.stop()
    failing = make_sampler(make_pynvml(fail={"nvmlSystemGetDriverVersion"}))
    assert failing.driver_version() is None and NOT_SUPPORTED in failing.driver_reason
    assert failing.available, "a driver version NVML will not give costs no telemetry"


def test_a_sampler_never_started_or_stopped_still_shuts_nvml_down():
    nvml = make_pynvml()
    with installed(nvml):
        version = NvmlSampler(CUDA0).driver_version()   # how the harness reads the driver for the environment
    gc.collect()
    assert version == nvml_standin.DRIVER_VERSION
    assert_paired(nvml)


def test_stop_twice_is_safe_shuts_down_once_and_start_after_stop_samples_nothing():
    nvml = make_pynvml()
    sampler = make_sampler(nvml)
    sample(sampler, n=2)
    sampler.stop()
    assert_paired(nvml)
    taken = len(sampler.samples)
    sampler.start()
    assert sampler._thread is None and len(sampler.samples) == taken
    sampler.stop()
    assert_paired(nvml)


def test_stop_without_start_shuts_down_once():
    nvml = make_pynvml()
    sampler = make_sampler(nvml)
    sampler.stop()
    sampler.stop()
    assert_paired(nvml)
    assert sampler.summary()["available"] is False


def test_readers_take_a_summary_with_a_field_missing():
    """The harness's gpu_util_mean skips a run without utilization instead of failing on it."""
    def run(nvml: dict) -> dict:
        return {"seed": 0, "status": "ok", "epochs": [], "final_test_acc": 0.9, "reached_target": True,
                "time_to_target_s": 1.0, "train_time_s": 1.0, "nvml": nvml}
    no_util = sample(make_sampler(make_pynvml(fail={"nvmlDeviceGetUtilizationRates"})))
    no_power = sample(make_sampler(make_pynvml(fail={"nvmlDeviceGetPowerUsage"})))
    assert summarize_run_dicts([run(no_util)])["gpu_util_mean"] is None
    assert summarize_run_dicts([run(no_util), run(no_power)])["gpu_util_mean"] == pytest.approx(EXPECTED["gpu_util_pct"])


def test_the_gpu_picture_draws_samples_with_nulls():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from speedrun.results import plots
    summary = sample(make_sampler(make_pynvml(fail={"nvmlDeviceGetPowerUsage"})))
    record = {"recipe": "classic", "runs": [{"seed": 0, "nvml": summary}], "nvml": {"available": True, "reason": None}}
    fig = Figure()
    plots._draw_gpu(fig, record)   # the drawing step alone: a full record is not needed to check it takes nulls
    util_ax, power_ax = fig.axes[:2]
    assert len(util_ax.lines) == 1 and len(power_ax.lines) == 1
