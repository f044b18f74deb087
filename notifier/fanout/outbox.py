"""The durable outbox: every notice a notifier owes is a SQLite row before anything is sent.

Theory of operation
===================

Write before send.
    `Fanout.emit` writes one row per (notice, notifier) in a single statement and returns once it
    is committed (WAL, `synchronous=FULL`: committed means on disk; writes arriving together share
    one commit through `notifier.groupcommit.SQLiteWriter`, each still atomic on its own). Only
    then is the row handed to a send task. A process that dies at any later point leaves the row `pending`, and the next
    `Fanout.open` sends every pending row. So a notice can be sent twice, never lost.

States.
    ``pending``  owed: never tried, in backoff, or in flight right now.
    ``sent``     the plugin reported success (`sent_at` set).
    ``skipped``  the plugin decided there was nothing to send (e.g. an estimate under the timeout
                 warning's threshold); `last_error` says why.
    ``failed``   dead: a permanent error, `fanout.max_attempts` exhausted, or the notifier no
                 longer exists. `outbox retry` (the CLI) puts it back to pending with attempts 0.

Retries.
    A transient failure (connection refused, 5xx, 429, a timeout) stores the error, increments
    `attempts` and sets `next_attempt_at` by exponential backoff with jitter, from
    `backoff_initial` doubling up to `backoff_max` (never sooner than a 429's `retry_after`).
    After `max_attempts` attempts the row is failed. Per-target results are stored in
    `targets_json`, so a multi-target notifier skips on retry the targets that already have it.

Idempotency.
    The key is sha256(notifier, event, workflow id, occurred_at): the same notice emitted twice
    (a runner retrying its own emit after a crash) hits the UNIQUE constraint and is queued once.
    Native HTTP sends carry it as an `Idempotency-Key` header so a sink that dedupes can absorb the
    one duplicate that the crash windows below allow.

Crash windows.
    1. Before the commit in `emit`: the notice was never queued; `emit` had not returned, so the
       caller knows (it raises `StoreError`).
    2. After the commit, before or during the send: the row is pending; the next process sends it.
    3. After the sink accepted it, before the row is marked sent: the next process sends it again
       with the same idempotency key (at-least-once). A deduplicating sink shows it once.
    4. A timeout is crash window 3 without the crash: the outcome is unknown and the row is retried
       (see `notifier.fanout.transports.apprise` for how an executor send still running is waited
       for rather than repeated).

Every `last_error` and target error is passed through `redactor.redact` before it is written, so
no configured secret reaches the file even if a plugin puts one in an exception message.

A damaged file.
    If SQLite finds the outbox damaged at open (not a database, or a page malformed: see
    `notifier.groupcommit.damaged`), the bot's `open` moves it, with its -wal and -shm, to the
    ``quarantine/`` folder beside it under a time-stamped name, logs an ERROR and starts with an
    empty outbox: the notices still owed in the damaged file are not sent (they may be read from
    the quarantined copy), but new ones flow, and the bot starts instead of stopping with a
    traceback. The CLI (``repair=False``) never moves the bot's file: it says the file is damaged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import aiosqlite
from loguru import logger

from ..config import postgres_dsn_of, postgres_extra_missing
from ..errors import StoreError
from ..events import Event, Notice
from ..groupcommit.damaged import (
    QUICK_CHECK,
    integrity_problem,
    is_damaged,
    quarantine_database,
)
from ..groupcommit.sqlite_writer import SQLiteWriter
from ..logs import redactor
from ..metrics import OUTBOX_PENDING

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "NewNotice",
    "Outbox",
    "OutboxRow",
    "OutboxStatus",
    "backoff_delay_s",
    "idempotency_key",
    "now_s",
    "open_outbox",
    "outbox_path",
]

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_MS: Final = 5000
QUARANTINE_DIR: Final = "quarantine"  # beside the outbox file: <storage.path>/quarantine by default
_WRITER_PRAGMAS: Final = (f"busy_timeout = {BUSY_TIMEOUT_MS}", "synchronous = FULL")
# Characters of an error kept in `last_error`; the rest of a long response body adds nothing.
LAST_ERROR_MAX_CHARS: Final = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    notifier         TEXT    NOT NULL,
    plugin           TEXT    NOT NULL,
    event            TEXT    NOT NULL,
    workflow_id      TEXT    NOT NULL,
    notice_json      TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  REAL    NOT NULL,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    sent_at          REAL,
    targets_json     TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_workflow ON outbox (workflow_id);
"""

_COLUMNS = (
    "id, idempotency_key, notifier, plugin, event, workflow_id, notice_json, status, attempts, "
    "last_error, next_attempt_at, created_at, updated_at, sent_at, targets_json"
)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


def idempotency_key(notifier: str, notice: Notice) -> str:
    """The same (notifier, event, workflow, moment) always gives the same key; anything else not."""
    material = "\x1f".join(
        (notifier, notice.event.value, notice.workflow_id, repr(float(notice.occurred_at)))
    )
    return hashlib.sha256(material.encode()).hexdigest()


def backoff_delay_s(
    attempt: int, *, initial_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): exponential, capped, with
    "equal jitter" (half fixed, half random) so retries of many notices to one sink spread out
    without ever retrying immediately."""
    ceiling = min(max_s, initial_s * 2.0 ** max(0, attempt - 1))
    draw = rng.random() if rng is not None else random.random()
    return ceiling / 2 + draw * ceiling / 2


def outbox_path(settings: Settings) -> Path:
    """`fanout.outbox_path`, or `<storage.path>/outbox.sqlite3`."""
    return settings.fanout.outbox_path or settings.storage.path / "outbox.sqlite3"


@dataclass(frozen=True, slots=True)
class NewNotice:
    """One notice owed by one notifier, about to be queued."""

    notifier: str
    plugin: str
    notice: Notice

    @property
    def key(self) -> str:
        return idempotency_key(self.notifier, self.notice)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored row. Times are Unix epoch seconds (wall clock: they outlive the process)."""

    id: int
    idempotency_key: str
    notifier: str
    plugin: str
    event: Event
    workflow_id: str
    notice: Notice
    status: OutboxStatus
    attempts: int
    last_error: str | None
    next_attempt_at: float
    created_at: float
    updated_at: float
    sent_at: float | None
    targets: Mapping[str, Mapping[str, Any]]

    @property
    def settled_targets(self) -> frozenset[str]:
        """Targets an earlier attempt delivered or gave up on for good; a retry skips them."""
        return frozenset(k for k, v in self.targets.items() if v.get("settled"))


def _row(values: sqlite3.Row | tuple[Any, ...]) -> OutboxRow:
    (
        row_id,
        key,
        notifier,
        plugin,
        event,
        workflow_id,
        notice_json,
        status,
        attempts,
        last_error,
        next_attempt_at,
        created_at,
        updated_at,
        sent_at,
        targets_json,
    ) = tuple(values)
    return OutboxRow(
        id=int(row_id),
        idempotency_key=str(key),
        notifier=str(notifier),
        plugin=str(plugin),
        event=Event(event),
        workflow_id=str(workflow_id),
        notice=Notice.from_json(json.loads(notice_json)),
        status=OutboxStatus(status),
        attempts=int(attempts),
        last_error=last_error,
        next_attempt_at=float(next_attempt_at),
        created_at=float(created_at),
        updated_at=float(updated_at),
        sent_at=None if sent_at is None else float(sent_at),
        targets=json.loads(targets_json or "{}"),
    )


def _clean_error(error: str | None) -> str | None:
    if error is None:
        return None
    text = redactor.redact(error)
    return text if len(text) <= LAST_ERROR_MAX_CHARS else text[: LAST_ERROR_MAX_CHARS - 3] + "..."


def _clean_targets(targets: Mapping[str, Mapping[str, Any]]) -> str:
    cleaned: dict[str, dict[str, Any]] = {}
    for key, value in targets.items():
        item = dict(value)
        item["errors"] = [redactor.redact(str(e)) for e in item.get("errors", [])]
        item["target"] = redactor.redact(str(item.get("target", "")))
        cleaned[key] = item
    return json.dumps(cleaned, sort_keys=True)


class _Damaged(Exception):
    """SQLite says the outbox file is damaged (the message says how); `Outbox.open` decides."""


def _prepare_file(path: Path) -> None:
    """Create the folder (0700) and an empty database file (0600) if missing: notices name users
    and carry summaries, so owner-only like the result store. SQLite gives its -wal and -shm
    files the database file's permissions. An existing file (restored from a copy, made by an
    older version) is made 0600 as well, like the store's index; an existing folder is left as it
    is (it may be shared)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with contextlib.suppress(FileNotFoundError):
            file.chmod(0o600)


class Outbox:
    """The outbox table: reads on an aiosqlite connection, writes through a group-committing
    `SQLiteWriter`; every write is one atomic statement.

    One process sends from an outbox at a time (the bot). The CLI may read it and requeue rows
    concurrently: WAL lets it, and the bot's retry loop notices requeued rows within its poll.
    """

    def __init__(self, db: aiosqlite.Connection, writer: SQLiteWriter, path: Path) -> None:
        self._db = db
        self._writer = writer
        self.path = path

    @classmethod
    async def open(cls, path: Path, *, repair: bool = True) -> Outbox:
        """Open (creating it and its folder if needed) with WAL and a full fsync per commit.

        Every write is one statement (the batch insert of `enqueue` included), run by the writer
        inside its own savepoint of a shared commit: atomic on its own, durable when it returns,
        and concurrent tasks never commit each other's half-done work.

        `repair` (the bot): a damaged file is checked for (``PRAGMA quick_check``) and moved to
        quarantine, and an empty outbox opened in its place (see the module docstring). Without
        it (the CLI, beside a running bot), a damaged file is a StoreError saying so.
        """
        try:
            return await cls._open(path, check=repair)
        except _Damaged as exc:
            if not repair:
                raise StoreError(
                    f"the outbox {path} is damaged ({exc}); start the bot: it moves the file "
                    "to quarantine and starts a new outbox"
                ) from None
            damage = str(exc)
        try:
            moved = await asyncio.to_thread(quarantine_database, path, path.parent / QUARANTINE_DIR)
        except OSError as exc:
            raise StoreError(
                f"the outbox {path} is damaged ({damage}) and cannot be moved aside: {exc}"
            ) from exc
        logger.error(
            "outbox: {} was damaged ({}); moved to {} and replaced by an empty outbox (notices "
            "still owed in it are not sent)",
            path,
            damage,
            moved,
        )
        return await cls._open(path, check=False)

    @classmethod
    async def _open(cls, path: Path, *, check: bool) -> Outbox:
        try:
            await asyncio.to_thread(_prepare_file, path)
            db = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            if is_damaged(exc):
                raise _Damaged(str(exc)) from exc
            raise StoreError(f"cannot open the outbox {path}: {exc}") from exc
        try:
            await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Before anything writes: a damaged file goes to quarantine as it was found.
            if check and (problem := integrity_problem(await db.execute_fetchall(QUICK_CHECK))):
                raise _Damaged(problem)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.executescript(_SCHEMA)
            await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            writer = await SQLiteWriter.open(path, _WRITER_PRAGMAS, name="outbox")
        except sqlite3.Error as exc:
            await db.close()
            if is_damaged(exc):
                raise _Damaged(str(exc)) from exc
            raise StoreError(f"cannot set up the outbox {path}: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        outbox = cls(db, writer, path)
        await outbox.refresh_gauge()
        return outbox

    async def close(self) -> None:
        try:
            await self._writer.close()
        finally:
            await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _write(self, sql: str, params: Sequence[Any], *, pending_delta: int = 0) -> int:
        """One statement, one transaction. `pending_delta` (per changed row) keeps the
        OUTBOX_PENDING gauge current without a COUNT per write."""
        try:
            changed = (await self._writer.execute(sql, params)).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"outbox write failed: {exc}") from exc
        if pending_delta and changed > 0:
            OUTBOX_PENDING.inc(pending_delta * changed)
        return changed

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[OutboxRow]:
        try:
            rows = await self._db.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"outbox read failed: {exc}") from exc
        return [_row(r) for r in rows]

    async def refresh_gauge(self) -> None:
        """Set OUTBOX_PENDING from a real count (at open and from the retry loop, which also
        catches rows a CLI in another process requeued)."""
        OUTBOX_PENDING.set(await self.count(OutboxStatus.PENDING))

    # -- queueing ---------------------------------------------------------------------------

    async def enqueue(self, notices: Sequence[NewNotice], *, now_s: float) -> list[OutboxRow]:
        """Insert the notices in one statement (atomic: all or none); return the rows created.
        A notice whose key is already queued is skipped: the UNIQUE key makes a re-emit harmless."""
        if not notices:
            return []
        values: list[Any] = []
        for item in notices:
            values.extend(
                (
                    item.key,
                    item.notifier,
                    item.plugin,
                    item.notice.event.value,
                    item.notice.workflow_id,
                    json.dumps(item.notice.to_json(), sort_keys=True),
                    now_s,
                    now_s,
                    now_s,
                )
            )
        placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"] * len(notices))
        try:
            written = await self._writer.execute(
                "INSERT INTO outbox (idempotency_key, notifier, plugin, event, workflow_id,"
                " notice_json, status, attempts, next_attempt_at, created_at, updated_at)"
                f" VALUES {placeholders}"
                f" ON CONFLICT(idempotency_key) DO NOTHING RETURNING {_COLUMNS}",
                values,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"outbox write failed: {exc}") from exc
        created = sorted((_row(r) for r in written.rows), key=lambda r: r.id)
        OUTBOX_PENDING.inc(len(created))
        return created

    # -- reading ----------------------------------------------------------------------------

    async def get(self, row_id: int) -> OutboxRow | None:
        rows = await self._read(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (row_id,))
        return rows[0] if rows else None

    async def rows(
        self,
        *,
        status: OutboxStatus | None = None,
        notifier: str | None = None,
        limit: int | None = 50,
    ) -> list[OutboxRow]:
        """Newest first."""
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if notifier is not None:
            where.append("notifier = ?")
            params.append(notifier)
        sql = f"SELECT {_COLUMNS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return await self._read(sql, params)

    async def pending(self) -> list[OutboxRow]:
        """Every pending row, oldest first."""
        return await self._read(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' ORDER BY id"
        )

    async def due(
        self, *, now_s: float, limit: int = 100, exclude: Collection[int] = ()
    ) -> list[OutboxRow]:
        """Pending rows whose `next_attempt_at` has come, skipping `exclude` (rows in flight)."""
        rows = await self._read(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at LIMIT ?",
            (now_s, limit + len(exclude)),
        )
        return [r for r in rows if r.id not in exclude][:limit]

    async def next_due_at(self, *, exclude: Collection[int] = ()) -> float | None:
        """The earliest `next_attempt_at` among pending rows not in `exclude`."""
        try:
            rows = await self._db.execute_fetchall(
                "SELECT id, next_attempt_at FROM outbox WHERE status = 'pending'"
                " ORDER BY next_attempt_at LIMIT ?",
                (len(exclude) + 1,),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"outbox read failed: {exc}") from exc
        for row_id, due_at in rows:
            if row_id not in exclude:
                return float(due_at)
        return None

    async def count(self, status: OutboxStatus) -> int:
        try:
            rows = await self._db.execute_fetchall(
                "SELECT COUNT(*) FROM outbox WHERE status = ?", (status.value,)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"outbox read failed: {exc}") from exc
        return int(next(iter(rows))[0])

    # -- outcomes ---------------------------------------------------------------------------

    async def mark_sent(
        self,
        row_id: int,
        *,
        attempts: int,
        targets: Mapping[str, Mapping[str, Any]],
        now_s: float,
        note: str | None = None,
    ) -> None:
        await self._write(
            "UPDATE outbox SET status = 'sent', attempts = ?, sent_at = ?, updated_at = ?,"
            " last_error = ?, targets_json = ? WHERE id = ? AND status = 'pending'",
            (attempts, now_s, now_s, _clean_error(note), _clean_targets(targets), row_id),
            pending_delta=-1,
        )

    async def mark_skipped(
        self,
        row_id: int,
        *,
        attempts: int,
        reason: str,
        targets: Mapping[str, Mapping[str, Any]],
        now_s: float,
    ) -> None:
        await self._write(
            "UPDATE outbox SET status = 'skipped', attempts = ?, updated_at = ?, last_error = ?,"
            " targets_json = ? WHERE id = ? AND status = 'pending'",
            (attempts, now_s, _clean_error(reason), _clean_targets(targets), row_id),
            pending_delta=-1,
        )

    async def mark_retry(
        self,
        row_id: int,
        *,
        attempts: int,
        error: str,
        next_attempt_at: float,
        targets: Mapping[str, Mapping[str, Any]],
        now_s: float,
    ) -> None:
        await self._write(
            "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ?, updated_at = ?,"
            " targets_json = ? WHERE id = ? AND status = 'pending'",
            (
                attempts,
                _clean_error(error),
                next_attempt_at,
                now_s,
                _clean_targets(targets),
                row_id,
            ),
        )

    async def mark_failed(
        self,
        row_id: int,
        *,
        attempts: int,
        error: str,
        targets: Mapping[str, Mapping[str, Any]] | None = None,
        now_s: float,
    ) -> None:
        if targets is None:
            await self._write(
                "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ?,"
                " updated_at = ? WHERE id = ? AND status = 'pending'",
                (attempts, _clean_error(error), now_s, row_id),
                pending_delta=-1,
            )
            return
        await self._write(
            "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ?, updated_at = ?,"
            " targets_json = ? WHERE id = ? AND status = 'pending'",
            (attempts, _clean_error(error), now_s, _clean_targets(targets), row_id),
            pending_delta=-1,
        )

    async def fail_pending_except(
        self, notifiers: Collection[str], *, error: str, now_s: float, exclude: Collection[int] = ()
    ) -> list[int]:
        """Fail every pending row whose notifier is not in `notifiers` (removed or disabled by a
        reload, or its plugin failed to load) and is not in flight; return their ids."""
        rows = [r for r in await self.pending() if r.notifier not in notifiers]
        failed: list[int] = []
        for row in rows:
            if row.id in exclude:
                continue
            message = error.format(notifier=row.notifier, id=row.id)
            await self.mark_failed(row.id, attempts=row.attempts, error=message, now_s=now_s)
            failed.append(row.id)
        return failed

    async def requeue(self, row_id: int, *, now_s: float) -> bool:
        """Put a failed row back to pending with a fresh attempt budget; targets that failed for
        good are tried again (the operator says so), delivered ones stay skipped. False if the
        row is not failed."""
        row = await self.get(row_id)
        if row is None or row.status is not OutboxStatus.FAILED:
            return False
        delivered = {k: v for k, v in row.targets.items() if v.get("status") == "sent"}
        changed = await self._write(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?,"
            " updated_at = ?, targets_json = ? WHERE id = ? AND status = 'failed'",
            (now_s, now_s, _clean_targets(delivered), row_id),
            pending_delta=1,
        )
        return changed > 0

    async def requeue_failed(self, *, now_s: float) -> int:
        """Requeue every failed row (as `requeue`); return how many."""
        count = 0
        for row in await self.rows(status=OutboxStatus.FAILED, limit=None):
            count += await self.requeue(row.id, now_s=now_s)
        return count

    # -- data requests ----------------------------------------------------------------------

    async def forget_user(self, user_id: int) -> int:
        """Delete every row whose notice names the user (``/notify forget``, ``notifier users
        forget``): any notifier, any status; return how many. A row being sent right now goes
        too: the send's outcome (`mark_sent` ...) then finds no pending row and changes
        nothing, so the notice is not retried and leaves no trace here."""
        try:
            written = await self._writer.execute(
                "DELETE FROM outbox WHERE json_extract(notice_json, '$.user_id') = ?"
                " RETURNING status",
                (user_id,),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"outbox write failed: {exc}") from exc
        OUTBOX_PENDING.dec(sum(1 for (status,) in written.rows if status == "pending"))
        return len(written.rows)


async def open_outbox(settings: Settings, *, repair: bool = True) -> Outbox:
    """The outbox `storage.backend` names: this SQLite file at `outbox_path(settings)` (the
    default; `repair` as in `Outbox.open`), or the table in the PostgreSQL database at
    `storage.postgres_dsn` that every process of a deployment shares
    (`notifier.fanout.outbox_postgres`, imported only then: the embedded default never needs
    psycopg). Raises ConfigError naming the field when the postgres backend cannot be used as
    configured, StoreError when the outbox cannot be opened."""
    if settings.storage.backend != "postgres":
        return await Outbox.open(outbox_path(settings), repair=repair)
    dsn = postgres_dsn_of(settings.storage)
    try:
        from .outbox_postgres import PostgresOutbox
    except ModuleNotFoundError as exc:
        if (error := postgres_extra_missing(exc)) is None:
            raise
        raise error from None
    return await PostgresOutbox.open(dsn, path=outbox_path(settings))


def now_s() -> float:
    """Wall-clock seconds, the outbox's time base (rows outlive the process's monotonic clock)."""
    return time.time()
