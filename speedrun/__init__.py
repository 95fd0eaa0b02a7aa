"""speedrun: fast single-GPU CIFAR-10 training to a target accuracy, and an honest harness around it."""
from __future__ import annotations

__version__ = "0.1.0"
