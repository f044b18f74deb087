"""A damaged SQLite file: telling one from a busy or unreadable one, and moving it aside.

Both SQLite files the bot keeps, the store's index and the fanout's outbox, can be rebuilt (the
index from the result files, the outbox empty), so a damaged one must not stop the bot at start
with a traceback. But only damage justifies that: SQLITE_CORRUPT ("database disk image is
malformed") or SQLITE_NOTADB ("file is not a database"), which no retry cures. A locked or busy
file, a full disk or a permission error is not damage and must never cost the file.

A damaged file is moved, never deleted, into a quarantine folder under a name carrying the time
(``index.sqlite3.20260806T101500Z.1a2b3c4d``), with its ``-wal`` and ``-shm`` companions under the
same name (a stale WAL left beside a new, empty database could be replayed into it), so an
operator can still open the copy with the sqlite3 shell.

Blocking functions: callers run them in a thread.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "COMPANIONS",
    "QUICK_CHECK",
    "integrity_problem",
    "is_damaged",
    "quarantine_database",
]

COMPANIONS: Final = ("-wal", "-shm")
_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600


def is_damaged(exc: BaseException) -> bool:
    """True if `exc` (or what it was raised from) says the SQLite file itself is damaged."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.DatabaseError):
            code = getattr(seen, "sqlite_errorcode", None)
            if isinstance(code, int) and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                return True
        seen = seen.__cause__
    return False


# SQLite's own check of every page. Damage past the first pages shows only when a query reaches
# it; this finds it at start instead of in the middle of a delivery.
QUICK_CHECK: Final = "PRAGMA quick_check(1)"


def integrity_problem(rows: Iterable[Sequence[object]]) -> str | None:
    """None if `QUICK_CHECK` answered these rows for a sound file, else its first complaint."""
    first = next(iter(rows), None)
    answer = "no answer" if first is None else str(first[0])
    return None if answer == "ok" else answer


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def quarantine_database(path: Path, quarantine_dir: Path) -> Path:
    """Move `path` and its -wal and -shm files into `quarantine_dir` (created 0700 if missing)
    under one fresh time-stamped name; return the database's new path."""
    quarantine_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    while True:
        target = quarantine_dir / f"{path.name}.{stamp}.{secrets.token_hex(4)}"
        if not any(os.path.lexists(f"{target}{suffix}") for suffix in ("", *COMPANIONS)):
            break
    for suffix in ("", *COMPANIONS):
        source = Path(f"{path}{suffix}")
        if not os.path.lexists(source):
            continue
        moved = Path(f"{target}{suffix}")
        os.rename(source, moved)
        if not moved.is_symlink():
            moved.chmod(_FILE_MODE)
    _fsync_dir(quarantine_dir)
    _fsync_dir(path.parent)
    return target
