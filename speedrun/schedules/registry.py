"""The policies by name: what ``--schedule NAME`` and recipes' ``ScheduleSpec`` look up."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from speedrun.errors import SettingError
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
from speedrun.schedules.schedule import Schedule

# Parameters every policy takes that describe the run rather than the policy itself.
_RUN_PARAMETERS = ("total_steps", "interval", "steps_per_epoch")

SCHEDULES: Mapping[str, Callable[..., Schedule]] = MappingProxyType({
    fn.__name__: fn
    for fn in (
        constant_lr, linear_lr, step_lr, multistep_lr, exponential_lr, polynomial_lr,
        cosine_annealing_lr, cosine_annealing_warm_restarts, cyclic_lr, one_cycle_lr,
        lambda_lr, multiplicative_lr, piecewise_linear,
    )
})


def policy_parameters(name: str) -> tuple[str, ...]:
    """The parameters policy ``name`` takes, besides total_steps, interval and steps_per_epoch."""
    policy = lookup_policy(name)
    return tuple(p for p in inspect.signature(policy).parameters if p not in _RUN_PARAMETERS)


def lookup_policy(name: str) -> Callable[..., Schedule]:
    key = str(name).strip().lower().replace("-", "_")
    if key not in SCHEDULES:
        raise ValueError(f"schedule {name!r} is unknown; known schedules: {', '.join(sorted(SCHEDULES))}")
    return SCHEDULES[key]


def build_schedule(name: str, total_steps: int, *, steps_per_epoch: int | None, interval: str = "step",
                   **params: Any) -> Schedule:
    """Build the schedule registered as ``name`` (hyphens allowed for underscores).

    A parameter the policy does not take, or a missing required one, is a ValueError naming it.
    """
    policy = lookup_policy(name)
    accepted = policy_parameters(policy.__name__)
    unknown = [p for p in params if p not in accepted]
    if unknown:
        takes = ", ".join(f"{{{p}}}" for p in accepted)
        raise SettingError(unknown[0], f"is not a parameter of schedule {policy.__name__!r} (it takes {takes})")
    signature = inspect.signature(policy)
    missing = [p for p in accepted if p not in params
               and signature.parameters[p].default is inspect.Parameter.empty]
    if "lr_lambda" in missing:          # before any other: no flag could ever give it
        raise SettingError("lr_lambda", f"is a Python function, which no command line can give: schedule "
                                        f"{policy.__name__!r} is for the library's API (speedrun.schedules."
                                        f"{policy.__name__} in Python)")
    if missing:
        raise SettingError(missing[0], f"is needed by schedule {policy.__name__!r}")
    return policy(total_steps, interval=interval, steps_per_epoch=steps_per_epoch, **params)
