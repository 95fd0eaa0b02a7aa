"""The loop's settings: a fractional epoch budget in whole steps, refused values named."""
from __future__ import annotations

import pytest

from speedrun.training.config import TrainConfig


@pytest.mark.parametrize("epochs, per_epoch, steps, run, last", [
    (9.9, 48, 476, 10, 44),        # airbench94's budget
    (10, 48, 480, 10, 48),
    (2.2, 5, 11, 3, 1),            # 2.2 * 5 is 11.000000000000002 in floats: still 11 steps
    (0.01, 48, 1, 1, 1),           # a sliver of an epoch is one step, never none
    (1.5, 4, 6, 2, 2),
])
def test_a_fractional_budget_trains_its_steps_rounded_up(epochs, per_epoch, steps, run, last):
    config = TrainConfig(epochs=epochs)
    assert config.total_steps(per_epoch) == steps
    assert config.epochs_run(per_epoch) == run
    assert [config.steps_in_epoch(e, per_epoch) for e in range(1, run + 1)] == [per_epoch] * (run - 1) + [last]
    assert config.whole_epochs == float(epochs).is_integer()


@pytest.mark.parametrize("field, value", [("epochs", 0), ("epochs", -1.5), ("epochs", float("inf")),
                                          ("batch_size", 2.5), ("eval_every", 0), ("tta", "all"),
                                          ("amp_dtype", "fp8")])
def test_bad_values_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})
