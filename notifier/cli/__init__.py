"""The operator CLI (``python -m notifier``): `results` and `outbox` command groups, no Discord."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
