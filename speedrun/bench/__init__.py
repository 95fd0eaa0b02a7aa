"""Measuring runs: the benchmark harness (seeded runs to a record), timing, NVML telemetry, the
environment a record names, the airbench anchor, profiling, the host-sync counter, and the LR
range test as a recorded command."""
