"""One seeded run on data already on the device: the trainer and its hot loop
(:mod:`~speedrun.training.trainer`), evaluation with test-time views
(:mod:`~speedrun.training.evaluation`), optimizers driven by device schedules
(:mod:`~speedrun.training.optimizers`), and the LR range test (:mod:`~speedrun.training.range_test`)."""
