"""Sweeps: many seeded runs and variants of ``speedrun train``, on Ray, resumable.

``spec`` reads the TOML a person writes; ``plan`` expands it into runs with stable ids and
checks their flags; ``pool`` runs them on Ray workers (one per GPU) and survives a worker's
death; ``worker`` is the process that trains; ``tune`` gives every variant the same number of
trials (Optuna); ``store`` keeps each run's file and merges a record per variant; ``sweep``
drives it all; ``summary`` says what came of it. Ray and Optuna are the optional ``sweep`` extra.
"""
