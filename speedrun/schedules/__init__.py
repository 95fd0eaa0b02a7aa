"""Learning-rate (and momentum) schedules, computed step by step for the device.

:mod:`~speedrun.schedules.schedule` says what a schedule is (and the per-step versus per-epoch
rule); :mod:`~speedrun.schedules.policies` has one function per PyTorch policy, with PyTorch's
parameter names; :mod:`~speedrun.schedules.registry` finds them by name;
:class:`~speedrun.schedules.spec.ScheduleSpec` is a policy as recipe data;
:mod:`~speedrun.schedules.plot` draws one. The names below are the public API:
``speedrun.schedules.one_cycle_lr(...)``.
"""
from __future__ import annotations

from speedrun.schedules.policies import (
                                         constant_lr,
                                         cosine_annealing_lr,
                                         cosine_annealing_warm_restarts,
                                         cyclic_lr,
                                         exponential_lr,
                                         lambda_lr,
                                         linear_lr,
                                         multiplicative_lr,
                                         multistep_lr,
                                         one_cycle_lr,
                                         piecewise_linear,
                                         polynomial_lr,
                                         step_lr,
)
from speedrun.schedules.registry import (
                                         SCHEDULES,
                                         build_schedule,
                                         lookup_policy,
                                         policy_parameters,
)
from speedrun.schedules.schedule import (
                                         ANNEAL_STRATEGIES,
                                         CYCLIC_MODES,
                                         CYCLIC_SCALE_MODES,
                                         INTERVALS,
                                         WARMUP_MODES,
                                         Schedule,
                                         chained_scheduler,
                                         sequential_lr,
                                         unit_count,
                                         with_warmup,
)
from speedrun.schedules.spec import ScheduleSpec

__all__ = [
    "ANNEAL_STRATEGIES", "CYCLIC_MODES", "CYCLIC_SCALE_MODES", "INTERVALS", "SCHEDULES", "WARMUP_MODES",
    "Schedule", "ScheduleSpec", "build_schedule", "chained_scheduler", "constant_lr", "cosine_annealing_lr",
    "cosine_annealing_warm_restarts", "cyclic_lr", "exponential_lr", "lambda_lr", "linear_lr", "lookup_policy", "multiplicative_lr",
    "multistep_lr", "one_cycle_lr", "piecewise_linear", "policy_parameters", "polynomial_lr", "sequential_lr", "step_lr",
    "unit_count", "with_warmup",
]
