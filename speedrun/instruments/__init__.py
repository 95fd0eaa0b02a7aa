"""How runs are measured: wall time by one rule, GPU telemetry from NVML, the machine they ran on.

Below training and the harness alike, so both time and sample the same way.
"""
