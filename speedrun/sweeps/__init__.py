"""Sweeps: many seeded runs and variants of ``speedrun train``, on Ray Tune, resumable.

``spec`` reads the TOML a person writes; ``plan`` expands it into runs with stable ids and
checks their flags; ``execution`` starts or joins Ray and runs Tune experiments of them, whose
trials are ``trial``; ``callbacks`` is what the driver hears from Tune (and the live table);
``tune`` gives every variant the same trials (Optuna, ASHA); ``store`` keeps each run's file,
the tables and a merged record per variant; ``sweep`` drives it all; ``summary`` says what came
of it. Ray Tune, Optuna and tensorboardX are the optional ``sweep`` extra.
"""
