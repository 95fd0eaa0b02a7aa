"""How the command line reads numbers: finite floats and whole numbers, or a one-line error naming the flag.

argparse calls these as a flag's ``type``; a bad value becomes ``argument --flag: 'x' is not ...``
on one line with exit code 2, before anything runs.
"""
from __future__ import annotations

import argparse
import math

# torch.manual_seed takes seeds below 2**63 on every device; a seed past that fails deep in a run.
MAX_SEED = 2**63 - 1


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def seed(text: str) -> int:
    value = whole_number(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed from 0 to 2**63 - 1")
    return value


def whole_numbers(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers, e.g. ``64,256,256``."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated whole numbers, e.g. 64,256,256") from None
