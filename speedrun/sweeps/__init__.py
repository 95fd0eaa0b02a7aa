"""Sweeps: many seeded runs and variants of ``speedrun train`` on Ray Tune, resumable.

``spec`` reads the TOML, ``plan`` expands it into runs with stable ids, ``execution`` runs Tune
experiments of them (their trials: ``trial``; what the driver hears: ``callbacks``), ``tune``
tunes every variant alike, ``store`` keeps the folder, ``sweep`` drives, ``summary`` reports.
"""
