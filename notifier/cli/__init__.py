"""The `notifier` command (also ``python -m notifier``): run, demo, init and the operator groups."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
