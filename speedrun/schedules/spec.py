"""A schedule as recipe data: a policy's name and parameters, built into per-step values once the run's length is known."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from speedrun.schedules.registry import build_schedule
from speedrun.schedules.schedule import Schedule


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule policy by name with its parameters, built once the step count is known.

    With ``knots_as_fraction`` (piecewise_linear only) knot positions are fractions of the
    whole run, so the recipe's shape survives an ``--epochs`` override.
    """

    name: str = "piecewise_linear"
    params: Mapping[str, Any] = field(default_factory=dict)
    interval: str = "step"
    knots_as_fraction: bool = False

    def build(self, total_steps: int, steps_per_epoch: int) -> Schedule:
        """The per-step :class:`~speedrun.schedules.policies.Schedule` for a run of ``total_steps``."""
        params = dict(self.params)
        if self.knots_as_fraction:
            params["knots"] = [(position * total_steps, lr) for position, lr in params["knots"]]
        return build_schedule(self.name, total_steps, steps_per_epoch=steps_per_epoch,
                              interval=self.interval, **params)
