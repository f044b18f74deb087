"""Group commit: writes that arrive together share one worker-thread hop and one fsync.

Used by the store (its index, through `SQLiteWriter`, and its result files, through `GroupRunner`)
and by the fanout's outbox (`SQLiteWriter`). It is its own room, below both, because the fanout may
not import the store; for the same reason it also holds what both SQLite files share about damage
(`damaged`: telling a damaged file from a busy one, and moving it to quarantine).
"""

from __future__ import annotations

from .damaged import QUICK_CHECK, integrity_problem, is_damaged, quarantine_database
from .group_runner import GroupRunner, Outcome
from .sqlite_writer import SQLiteWriter

__all__ = [
    "QUICK_CHECK",
    "GroupRunner",
    "Outcome",
    "SQLiteWriter",
    "integrity_problem",
    "is_damaged",
    "quarantine_database",
]
