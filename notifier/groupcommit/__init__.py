"""Group commit: writes that arrive together share one worker-thread hop and one fsync.

Used by the store (its index, through `SQLiteWriter`, and its result files, through `GroupRunner`)
and by the fanout's outbox (`SQLiteWriter`). It is its own room, below both, because the fanout may
not import the store.
"""

from __future__ import annotations

from .group_runner import GroupRunner, Outcome
from .sqlite_writer import SQLiteWriter

__all__ = ["GroupRunner", "Outcome", "SQLiteWriter"]
