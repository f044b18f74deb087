"""The rules every store backend applies the same way before it touches its storage.

Pure functions, no I/O: the SQLite/files store (`result_store`) and the PostgreSQL store
(`postgres.store`) both take a workflow's progress, a step's index and name, an autocomplete prefix
and a purge's cutoff through here, so the two cannot drift apart on what they accept.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from ..records import WorkflowRecord

__all__ = [
    "clamp_progress",
    "copy_record",
    "id_prefix",
    "purge_cutoff",
    "validate_purge",
    "validate_step",
]

_HEX: Final = frozenset("0123456789abcdef")
_ID_LENGTH: Final = 32


def copy_record(record: WorkflowRecord) -> WorkflowRecord:
    """A copy a caller may change: records are mutable dataclasses, and a store hands out its own
    (a result held in memory, a running workflow's row) only as copies."""
    return dataclasses.replace(record, options=dict(record.options))


def clamp_progress(progress: float) -> float:
    """A progress fraction as stored: 0..1, NaN as 0 (a workflow's arithmetic is not trusted)."""
    fraction = float(progress)
    if fraction != fraction:  # NaN
        return 0.0
    return min(1.0, max(0.0, fraction))


def validate_step(index: object, name: object) -> None:
    """ValueError naming the argument unless `index` is a whole number from 0 (not a bool) and
    `name` is non-empty text."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"a step's index is a whole number from 0, not {index!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a step's name is non-empty text, not {name!r}")


def id_prefix(prefix: str) -> str | None:
    """What an autocomplete prefix stands for (lowercase, dashes dropped), or None when no
    workflow id could start with it: it is typing, not an error, so the answer is an empty list."""
    cleaned = prefix.strip().lower().replace("-", "")
    if len(cleaned) > _ID_LENGTH or not set(cleaned) <= _HEX:
        return None
    return cleaned


def validate_purge(*, older_than_s: float | None, before: float | None) -> None:
    """ValueError unless a purge names at most one cutoff, and no negative age."""
    if older_than_s is not None and before is not None:
        raise ValueError("give older_than_s or before, not both")
    if older_than_s is not None and older_than_s < 0:
        raise ValueError("older_than_s must not be negative")


def purge_cutoff(
    *,
    now_s: float,
    retention_s: float,
    older_than_s: float | None,
    before: float | None,
) -> float:
    """A purge's cutoff (Unix seconds): `before`, or now minus `older_than_s`, or now minus the
    retention period. ValueError for both given, or a negative age (`validate_purge`)."""
    validate_purge(older_than_s=older_than_s, before=before)
    if before is not None:
        return before
    if older_than_s is not None:
        return now_s - older_than_s
    return now_s - retention_s
