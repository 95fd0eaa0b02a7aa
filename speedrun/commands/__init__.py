"""Thin CLI subcommands: each module has ``register(subparsers)`` and ``run(args) -> int``.

The logic lives in the library modules (``speedrun.leaderboard``, ``speedrun.compare``,
``speedrun.plots``); these only parse, call and print. Errors are raised as
:class:`speedrun.errors.SpeedrunError` for ``speedrun.cli`` to print and map to exit code 2.
"""
