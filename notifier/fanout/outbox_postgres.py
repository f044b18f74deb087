"""The outbox in PostgreSQL: one table that a gateway and its workers share, each notice sent once.

`storage.backend: postgres` puts the outbox here (`notifier.fanout.outbox.open_outbox` chooses);
the methods and what they mean are those of the SQLite `Outbox` (its module docstring is the
theory of operation: write before send, states, retries, idempotency, crash windows). What
changes is that several processes poll the same rows, so each row a process is about to send is
first *claimed*.

Claims and the lease
====================

A claim is two columns of the row: `claimed_by` (who: ``host:pid:random``, one per open
outbox) and `claimed_until` (until when, on the database server's clock, the one clock every
process shares). A row held by another process whose claim has not run out is invisible to this
one: `due`, `pending`, `next_due_at` and `fail_pending_except` skip it, and `mark_retry` leaves
it alone. A process's own claims are invisible to nobody: to itself the outbox behaves exactly
like the SQLite one (rows in flight are passed in `exclude`, as the Fanout does).

Claiming.
    `enqueue` writes its rows already claimed by the caller (the process that emits a notice
    sends it). `due` and `pending` claim what they return, in one statement that picks the rows
    with ``SELECT ... FOR UPDATE SKIP LOCKED`` and sets the claim: two processes polling at the
    same moment skip each other's rows, and a row claimed a moment ago is seen claimed (READ
    COMMITTED re-reads a row it locks), so they never both return the same row.

The lease.
    `lease_s` (`DEFAULT_LEASE_S`, 30 s): a claim lasts that long from its last renewal. While the
    outbox is open, a task renews every pending row it holds every `lease_s / 3`, so a claim
    never runs out while its holder lives, however long the send waits for a slot or a sink.
    Any outcome (`mark_sent`, `mark_skipped`, `mark_failed`, `mark_retry`) clears the claim; a
    row in backoff belongs to nobody and whichever process polls first at `next_attempt_at`
    claims it. `close` gives back every claim at once, so a clean stop hands the rows it was
    sending to the other processes right away.

A holder that dies.
    A process killed (or cut off from the database) stops renewing. Its rows stay pending and
    claimed until `claimed_until` passes; then the next poll of any other process (the Fanout
    polls at least every `POLL_INTERVAL_S`) claims and sends them. A notice the dead process had
    already handed to its sink is sent again, with the same idempotency key, which a receiver can
    use to show it once: delivery is at least once, as with SQLite across a restart.

Limits of the promise.
    "Never twice while its holder lives" holds as long as the holder can renew: an event loop
    blocked, or the database unreachable, for longer than two thirds of the lease lets the claim
    run out while the send goes on, and another process may send it too. When the late holder
    then records its outcome and finds the row claimed by someone else it logs a WARNING saying
    so; a terminal outcome (sent, skipped, failed) is still recorded (it is true; the other
    holder's own outcome then changes nothing), a retry is left to the current holder.

Times.
    `next_attempt_at`, `created_at`, ... are epoch seconds from the caller's wall clock, as in
    SQLite (callers pass `now_s`); only the lease uses the server's clock. Hosts should keep their
    clocks in step (NTP): one running ahead retries a little early, nothing worse.

Schema.
    The table comes from `OUTBOX_MIGRATIONS` (ordered; each step idempotent SQL), the set
    `OUTBOX_SET`, applied at open by the one migration engine (`notifier.schema_migrations`: one
    transaction under its advisory lock, the version row ``outbox`` in
    ``notifier_schema_versions``). Processes
    starting together wait for each other's migration instead of racing it. A database whose
    outbox version is newer than `OUTBOX_MIGRATIONS` knows is refused at open, in words.

Text.
    PostgreSQL text cannot hold a NUL character, which an exception message can: errors are
    stored with each NUL written as ``\\x00``. Notices and targets are stored as ASCII JSON (as in
    SQLite), so their NULs are already escaped.

Import.
    `import_outbox` copies an SQLite outbox's rows here (``notifier store migrate``): each with
    its idempotency key, state, attempts, errors, times and per-target results, claimed by
    nobody, in the SQLite order. A key this table holds already is compared, not copied again:
    the same content is skipped (running the import twice copies nothing), other content is
    reported and never overwritten.

This is the only module of the package that imports psycopg (the `postgres` extra); the embedded
default never loads it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from loguru import logger
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from ..config import dsn_secrets
from ..errors import StoreError
from ..logs import redactor
from ..metrics import OUTBOX_PENDING
from ..pg_pool import IdleCheckedConnection, check_if_idle, note_returned
from ..schema_migrations import VERSION_TABLE, SchemaNewer, migrate, numbered, table_exists
from .outbox import (
    _COLUMNS,
    NewNotice,
    Outbox,
    OutboxRow,
    OutboxStatus,
    _clean_error,
    _clean_targets,
    _row,
)

__all__ = [
    "DEFAULT_LEASE_S",
    "IMPORT_PAGE_ROWS",
    "OUTBOX_COMPONENT",
    "OUTBOX_MIGRATIONS",
    "OUTBOX_SET",
    "OUTBOX_TABLE",
    "SCHEMA_VERSIONS_TABLE",
    "OutboxImport",
    "PostgresOutbox",
    "apply_outbox_migrations",
    "import_outbox",
    "imported_counts",
]

# A claim lasts this long after its last renewal; a dead holder's rows are sent again after it.
DEFAULT_LEASE_S: Final = 30.0
# How long `open` waits for the server (libpq's connect_timeout takes whole seconds, at least 2).
DEFAULT_CONNECT_TIMEOUT_S: Final = 10
# Connections per open outbox: the Fanout's sends record their outcomes through these.
DEFAULT_POOL_MAX_SIZE: Final = 8
# A write waits this long for a free connection before it is a StoreError (the row stays pending).
POOL_WAIT_S: Final = 30.0

OUTBOX_TABLE: Final = "notifier_outbox"
SCHEMA_VERSIONS_TABLE: Final = VERSION_TABLE
OUTBOX_COMPONENT: Final = "outbox"

# Step N brings the outbox from version N-1 to N. Never edit a released step: append one.
OUTBOX_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the table of the SQLite outbox, plus the claim (who sends it now, and until when).
    f"""
    CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        idempotency_key  text             NOT NULL UNIQUE,
        notifier         text             NOT NULL,
        plugin           text             NOT NULL,
        event            text             NOT NULL,
        workflow_id      text             NOT NULL,
        notice_json      text             NOT NULL,
        status           text             NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
        attempts         integer          NOT NULL DEFAULT 0,
        last_error       text,
        next_attempt_at  double precision NOT NULL,
        created_at       double precision NOT NULL,
        updated_at       double precision NOT NULL,
        sent_at          double precision,
        targets_json     text             NOT NULL DEFAULT '{{}}',
        claimed_by       text,
        claimed_until    timestamptz,
        CHECK ((claimed_by IS NULL) = (claimed_until IS NULL))
    );
    CREATE INDEX IF NOT EXISTS {OUTBOX_TABLE}_due
        ON {OUTBOX_TABLE} (next_attempt_at, id) WHERE status = 'pending';
    CREATE INDEX IF NOT EXISTS {OUTBOX_TABLE}_status ON {OUTBOX_TABLE} (status, id);
    CREATE INDEX IF NOT EXISTS {OUTBOX_TABLE}_workflow ON {OUTBOX_TABLE} (workflow_id);
    """,
)
OUTBOX_SET: Final = numbered(OUTBOX_COMPONENT, OUTBOX_MIGRATIONS)

# A row this process may take: nobody holds it, this process does, or the holder's lease ran out.
_FREE_OR_MINE: Final = (
    "(claimed_by IS NULL OR claimed_by = %(me)s OR claimed_until < clock_timestamp())"
)
_CLAIM: Final = (
    "claimed_by = %(me)s, claimed_until = clock_timestamp() + make_interval(secs => %(lease_s)s)"
)


def _describe_dsn(dsn: str) -> str:
    """Where a DSN points, without its password: ``host:port/dbname`` (libpq's defaults shown
    as such)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "a DSN libpq cannot parse"
    host = params.get("host") or params.get("hostaddr") or "the default host"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or 'the default database'}"


def _text(error: str | None) -> str | None:
    """An error as PostgreSQL text can hold it (no NUL), after the usual redaction and cut."""
    cleaned = _clean_error(error)
    return None if cleaned is None else cleaned.replace("\x00", "\\x00")


def _notice_json(item: NewNotice) -> str:
    """The notice as the SQLite outbox stores it: sorted keys, ASCII (NULs escaped)."""
    return json.dumps(item.notice.to_json(), sort_keys=True)


def _claimer_id() -> str:
    """Who holds a claim: the host and process an operator can look for, and a random part so
    two outboxes of one process (tests, a CLI beside a bot in one interpreter) differ."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def apply_outbox_migrations(connection: psycopg.AsyncConnection[Any]) -> int:
    """Bring the outbox's tables to the newest version this code knows, through the one migration
    engine (`notifier.schema_migrations`: one transaction under the schema advisory lock); return
    the version now in the database. Raises StoreError if the database is at a version newer
    than this code knows (a newer notifier migrated it)."""
    try:
        await migrate(connection, [OUTBOX_SET])
    except SchemaNewer as exc:
        raise StoreError(
            f"the outbox's tables in this database are at schema version {exc.found}, newer "
            f"than this notifier knows ({exc.latest}): a newer notifier migrated them; run that "
            "version (or newer) here"
        ) from None
    return OUTBOX_SET.latest


class PostgresOutbox(Outbox):
    """The outbox table in PostgreSQL, shared by every process of a deployment (see the module
    docstring for claims and the lease). Open it with `PostgresOutbox.open(dsn)`.

    It is an `Outbox` (every public method overridden, none of the SQLite machinery used) so that
    code typed against the SQLite class, the Fanout and the CLI, takes it unchanged.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]],
        *,
        location: str,
        path: Path,
        lease_s: float,
    ) -> None:
        """Use `PostgresOutbox.open`; this only assembles an open pool."""
        self._pool = pool
        self.location = location
        # Not where the rows are (that is `location`): the SQLite path the settings name, kept so
        # code written for the SQLite outbox (the Fanout's reload check) sees no change.
        self.path = path
        self.lease_s = lease_s
        self.claimer = _claimer_id()
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(  # type: ignore[override]  # a DSN, where the SQLite outbox takes a file
        cls,
        dsn: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        path: Path | None = None,
        connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
        pool_max_size: int = DEFAULT_POOL_MAX_SIZE,
    ) -> PostgresOutbox:
        """Connect, migrate the outbox's tables (see the module docstring), open a pool and start
        renewing this outbox's claims. Raises StoreError naming the server (never the password)
        when it cannot be reached or its schema is newer than this code."""
        if lease_s <= 0:
            raise ValueError(f"lease_s must be more than 0 (got {lease_s!r})")
        redactor.add(dsn_secrets(dsn))
        location = _describe_dsn(dsn)
        try:
            async with await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=connect_timeout_s
            ) as connection:
                await apply_outbox_migrations(connection)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot open the outbox in PostgreSQL at {location}: {redactor.redact(str(exc))}"
            ) from None
        pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
            dsn,
            connection_class=IdleCheckedConnection,
            min_size=1,
            max_size=max(1, pool_max_size),
            kwargs={"autocommit": True, "connect_timeout": connect_timeout_s},
            # A connection the server dropped (a restart) is replaced before use, not failed on;
            # one used moments ago goes out without a ping of its own (`notifier.pg_pool`).
            check=check_if_idle,
            reset=note_returned,
            timeout=POOL_WAIT_S,
            name="notifier-outbox",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout_s)
        except psycopg.Error as exc:
            await pool.close()
            raise StoreError(
                f"cannot open the outbox in PostgreSQL at {location}: {redactor.redact(str(exc))}"
            ) from None
        outbox = cls(pool, location=location, path=path or Path(location), lease_s=lease_s)
        try:
            await outbox.refresh_gauge()
        except BaseException:
            await pool.close()
            raise
        outbox._renewer = asyncio.create_task(outbox._renew_claims(), name="notifier-outbox-lease")
        return outbox

    async def close(self) -> None:
        """Stop renewing, give back every claim this outbox holds (the rows go to the other
        processes now, not after the lease), close the pool."""
        if self._closed:
            return
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        try:
            await self._execute(
                f"UPDATE {OUTBOX_TABLE} SET claimed_by = NULL, claimed_until = NULL"
                " WHERE claimed_by = %(me)s",
                {"me": self.claimer},
            )
        except StoreError as exc:
            logger.warning(
                "outbox: claims of {} not given back at close ({}); other processes take the rows "
                "after the lease ({:g}s)",
                self.claimer,
                exc,
                self.lease_s,
            )
        finally:
            await self._pool.close()

    # -- plumbing ---------------------------------------------------------------------------

    async def _execute(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> int:
        """One statement, its own transaction (autocommit); the rows it changed."""
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(sql, params)
                return cursor.rowcount
        except psycopg.Error as exc:
            raise StoreError(f"outbox write failed: {redactor.redact(str(exc))}") from exc

    async def _fetch(
        self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(sql, params)
                return await cursor.fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"outbox query failed: {redactor.redact(str(exc))}") from exc

    async def _renew_claims(self) -> None:
        """Push `claimed_until` of every pending row this outbox holds a lease further, every
        third of a lease, for as long as it is open."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._execute(
                    f"UPDATE {OUTBOX_TABLE} SET {_CLAIM}"
                    " WHERE claimed_by = %(me)s AND status = 'pending'",
                    {"me": self.claimer, "lease_s": self.lease_s},
                )
            except StoreError as exc:
                logger.warning(
                    "outbox: claims of {} not renewed ({}); if this lasts past the lease "
                    "({:g}s) other processes may send its rows too",
                    self.claimer,
                    exc,
                    self.lease_s,
                )

    async def refresh_gauge(self) -> None:
        OUTBOX_PENDING.set(await self.count(OutboxStatus.PENDING))

    # -- queueing ---------------------------------------------------------------------------

    async def enqueue(self, notices: Sequence[NewNotice], *, now_s: float) -> list[OutboxRow]:
        """Insert the notices in one statement (all or none), claimed by this outbox: the caller
        sends them. A key already queued (by any process) is skipped; only new rows return."""
        if not notices:
            return []
        columns: list[list[Any]] = [[] for _ in range(6)]
        for item in notices:
            for column, value in zip(
                columns,
                (
                    item.key,
                    item.notifier,
                    item.plugin,
                    item.notice.event.value,
                    item.notice.workflow_id,
                    _notice_json(item),
                ),
                strict=True,
            ):
                column.append(value)
        rows = await self._fetch(
            f"INSERT INTO {OUTBOX_TABLE} (idempotency_key, notifier, plugin, event, workflow_id,"
            " notice_json, status, attempts, next_attempt_at, created_at, updated_at,"
            " claimed_by, claimed_until)"
            " SELECT k, n, p, e, w, j, 'pending', 0, %(now)s, %(now)s, %(now)s,"
            " %(me)s, clock_timestamp() + make_interval(secs => %(lease_s)s)"
            " FROM unnest(%(k)s::text[], %(n)s::text[], %(p)s::text[], %(e)s::text[],"
            " %(w)s::text[], %(j)s::text[]) WITH ORDINALITY AS new(k, n, p, e, w, j, position)"
            " ORDER BY position"
            f" ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_COLUMNS}",
            {
                "now": now_s,
                "me": self.claimer,
                "lease_s": self.lease_s,
                **dict(zip("knpewj", columns, strict=True)),
            },
        )
        created = sorted((_row(r) for r in rows), key=lambda r: r.id)
        OUTBOX_PENDING.inc(len(created))
        return created

    # -- reading ----------------------------------------------------------------------------

    async def get(self, row_id: int) -> OutboxRow | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM {OUTBOX_TABLE} WHERE id = %s", (row_id,))
        return _row(rows[0]) if rows else None

    async def rows(
        self,
        *,
        status: OutboxStatus | None = None,
        notifier: str | None = None,
        limit: int | None = 50,
    ) -> list[OutboxRow]:
        """Newest first. Only reads: claims are not taken or looked at."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if status is not None:
            where.append("status = %(status)s")
            params["status"] = status.value
        if notifier is not None:
            where.append("notifier = %(notifier)s")
            params["notifier"] = notifier
        sql = f"SELECT {_COLUMNS} FROM {OUTBOX_TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT %(limit)s"
            params["limit"] = int(limit)
        return [_row(r) for r in await self._fetch(sql, params)]

    async def _claim(
        self, *, now_s: float | None, limit: int | None, exclude: Collection[int]
    ) -> list[OutboxRow]:
        """Claim pending rows no other live claimer holds (due by `now_s`, if given), oldest due
        first, skipping rows another transaction is claiming right now; return them."""
        due = "AND next_attempt_at <= %(now)s" if now_s is not None else ""
        limited = "LIMIT %(limit)s" if limit is not None else ""
        rows = await self._fetch(
            f"WITH picked AS MATERIALIZED ("
            f" SELECT id AS picked_id FROM {OUTBOX_TABLE}"
            f" WHERE status = 'pending' {due} AND {_FREE_OR_MINE}"
            "  AND NOT (id = ANY(%(exclude)s::bigint[]))"
            f" ORDER BY next_attempt_at, id {limited} FOR UPDATE SKIP LOCKED)"
            f" UPDATE {OUTBOX_TABLE} SET {_CLAIM}"
            f" WHERE id IN (SELECT picked_id FROM picked) RETURNING {_COLUMNS}",
            {
                "now": now_s,
                "limit": limit,
                "me": self.claimer,
                "lease_s": self.lease_s,
                "exclude": sorted(exclude),
            },
        )
        return [_row(r) for r in rows]

    async def pending(self) -> list[OutboxRow]:
        """Every pending row no other process holds, oldest first, now claimed by this outbox
        (the Fanout sends all of them at start)."""
        return sorted(await self._claim(now_s=None, limit=None, exclude=()), key=lambda r: r.id)

    async def due(
        self, *, now_s: float, limit: int = 100, exclude: Collection[int] = ()
    ) -> list[OutboxRow]:
        """Pending rows whose `next_attempt_at` has come, skipping `exclude` (this process's rows
        in flight) and rows another live process holds; claimed by this outbox as they return."""
        rows = await self._claim(now_s=now_s, limit=limit, exclude=exclude)
        return sorted(rows, key=lambda r: (r.next_attempt_at, r.id))

    async def next_due_at(self, *, exclude: Collection[int] = ()) -> float | None:
        """The earliest `next_attempt_at` among pending rows not in `exclude` that this process
        could claim (a row another live process holds is its business, not a reason to wake)."""
        rows = await self._fetch(
            f"SELECT min(next_attempt_at) FROM {OUTBOX_TABLE}"
            f" WHERE status = 'pending' AND {_FREE_OR_MINE}"
            " AND NOT (id = ANY(%(exclude)s::bigint[]))",
            {"me": self.claimer, "exclude": sorted(exclude)},
        )
        value = rows[0][0] if rows else None
        return None if value is None else float(value)

    async def count(self, status: OutboxStatus) -> int:
        rows = await self._fetch(
            f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE status = %s", (status.value,)
        )
        return int(rows[0][0])

    # -- outcomes ---------------------------------------------------------------------------

    async def _settle(
        self, row_id: int, assignments: str, params: Mapping[str, Any], *, terminal: bool
    ) -> int:
        """Record an outcome of pending row `row_id` and clear its claim, in one transaction.
        A terminal outcome is recorded whoever holds the row; a retry only if no other live
        process does. Either way a row held by another process is logged (see the module
        docstring: a lease that ran out while its holder was sending)."""
        try:
            async with self._pool.connection() as connection, connection.transaction():
                cursor = await connection.execute(
                    f"SELECT claimed_by, claimed_until > clock_timestamp() FROM {OUTBOX_TABLE}"
                    " WHERE id = %s AND status = 'pending' FOR UPDATE",
                    (row_id,),
                )
                found = await cursor.fetchone()
                if found is None:
                    return 0
                holder, live = found
                taken = holder is not None and holder != self.claimer and bool(live)
                if taken:
                    logger.warning(
                        "outbox: notice {} is held by {} (this process's claim ran out while it "
                        "was sending: a stalled loop or an unreachable database); {}",
                        row_id,
                        holder,
                        "its outcome here is recorded; it may have been sent twice with the "
                        "same idempotency key"
                        if terminal
                        else "the retry is left to that process",
                    )
                    if not terminal:
                        return 0
                cursor = await connection.execute(
                    f"UPDATE {OUTBOX_TABLE} SET {assignments},"
                    " claimed_by = NULL, claimed_until = NULL WHERE id = %(id)s",
                    {**params, "id": row_id},
                )
                return cursor.rowcount
        except psycopg.Error as exc:
            raise StoreError(f"outbox write failed: {redactor.redact(str(exc))}") from exc

    async def mark_sent(
        self,
        row_id: int,
        *,
        attempts: int,
        targets: Mapping[str, Mapping[str, Any]],
        now_s: float,
        note: str | None = None,
    ) -> None:
        changed = await self._settle(
            row_id,
            "status = 'sent', attempts = %(attempts)s, sent_at = %(now)s, updated_at = %(now)s,"
            " last_error = %(error)s, targets_json = %(targets)s",
            {
                "attempts": attempts,
                "now": now_s,
                "error": _text(note),
                "targets": _clean_targets(targets),
            },
            terminal=True,
        )
        OUTBOX_PENDING.dec(changed)

    async def mark_skipped(
        self,
        row_id: int,
        *,
        attempts: int,
        reason: str,
        targets: Mapping[str, Mapping[str, Any]],
        now_s: float,
    ) -> None:
        changed = await self._settle(
            row_id,
            "status = 'skipped', attempts = %(attempts)s, updated_at = %(now)s,"
            " last_error = %(error)s, targets_json = %(targets)s",
            {
                "attempts": attempts,
                "now": now_s,
                "error": _text(reason),
                "targets": _clean_targets(targets),
            },
            terminal=True,
        )
        OUTBOX_PENDING.dec(changed)

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
        await self._settle(
            row_id,
            "attempts = %(attempts)s, last_error = %(error)s, next_attempt_at = %(next)s,"
            " updated_at = %(now)s, targets_json = %(targets)s",
            {
                "attempts": attempts,
                "error": _text(error),
                "next": next_attempt_at,
                "now": now_s,
                "targets": _clean_targets(targets),
            },
            terminal=False,
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
        assignments = (
            "status = 'failed', attempts = %(attempts)s, last_error = %(error)s,"
            " updated_at = %(now)s"
        )
        params: dict[str, Any] = {"attempts": attempts, "error": _text(error), "now": now_s}
        if targets is not None:
            assignments += ", targets_json = %(targets)s"
            params["targets"] = _clean_targets(targets)
        changed = await self._settle(row_id, assignments, params, terminal=True)
        OUTBOX_PENDING.dec(changed)

    async def fail_pending_except(
        self, notifiers: Collection[str], *, error: str, now_s: float, exclude: Collection[int] = ()
    ) -> list[int]:
        """Fail every pending row whose notifier is not in `notifiers`, is not in `exclude` and
        is not held by another live process (it is being sent there); return their ids."""
        try:
            async with self._pool.connection() as connection, connection.transaction():
                cursor = await connection.execute(
                    f"SELECT id, notifier FROM {OUTBOX_TABLE}"
                    " WHERE status = 'pending' AND NOT (notifier = ANY(%(notifiers)s::text[]))"
                    f" AND NOT (id = ANY(%(exclude)s::bigint[])) AND {_FREE_OR_MINE}"
                    " ORDER BY id FOR UPDATE SKIP LOCKED",
                    {
                        "notifiers": sorted(notifiers),
                        "exclude": sorted(exclude),
                        "me": self.claimer,
                    },
                )
                found = await cursor.fetchall()
                for row_id, notifier in found:
                    await connection.execute(
                        f"UPDATE {OUTBOX_TABLE} SET status = 'failed', last_error = %(error)s,"
                        " updated_at = %(now)s, claimed_by = NULL, claimed_until = NULL"
                        " WHERE id = %(id)s",
                        {
                            "error": _text(error.format(notifier=notifier, id=row_id)),
                            "now": now_s,
                            "id": row_id,
                        },
                    )
        except psycopg.Error as exc:
            raise StoreError(f"outbox write failed: {redactor.redact(str(exc))}") from exc
        OUTBOX_PENDING.dec(len(found))
        return [int(row_id) for row_id, _ in found]

    async def requeue(self, row_id: int, *, now_s: float) -> bool:
        """Put a failed row back to pending with a fresh attempt budget, claimed by nobody (the
        first process to poll sends it); targets that failed for good are tried again, delivered
        ones stay skipped. False if the row is not failed."""
        row = await self.get(row_id)
        if row is None or row.status is not OutboxStatus.FAILED:
            return False
        delivered = {k: v for k, v in row.targets.items() if v.get("status") == "sent"}
        changed = await self._execute(
            f"UPDATE {OUTBOX_TABLE} SET status = 'pending', attempts = 0,"
            " next_attempt_at = %(now)s, updated_at = %(now)s, targets_json = %(targets)s,"
            " claimed_by = NULL, claimed_until = NULL WHERE id = %(id)s AND status = 'failed'",
            {"now": now_s, "targets": _clean_targets(delivered), "id": row_id},
        )
        OUTBOX_PENDING.inc(changed)
        return changed > 0

    async def requeue_failed(self, *, now_s: float) -> int:
        """Requeue every failed row (as `requeue`); return how many."""
        count = 0
        for row in await self.rows(status=OutboxStatus.FAILED, limit=None):
            count += await self.requeue(row.id, now_s=now_s)
        return count

    async def forget_user(self, user_id: int) -> int:
        """Delete every row whose notice names the user, whoever holds it (the notice JSON is
        text: its ``user_id`` is compared as the text JSON writes it); return how many. A holder
        sending one of them records its outcome into nothing (`_settle` finds no row) and its
        lease renewal skips it: the notice goes no further."""
        rows = await self._fetch(
            f"DELETE FROM {OUTBOX_TABLE} WHERE (notice_json::jsonb ->> 'user_id') = %s"
            " RETURNING status",
            (str(user_id),),
        )
        OUTBOX_PENDING.dec(sum(1 for (status,) in rows if status == "pending"))
        return len(rows)


# -- bulk import: the SQLite outbox's rows into this table (notifier store migrate) --------------

# SQLite rows read, compared and written per transaction.
IMPORT_PAGE_ROWS: Final = 1_000
# What a row is, apart from its id (PostgreSQL numbers its own) and its claim (nobody holds an
# imported row: the first process to poll sends the pending ones).
_IMPORTED: Final = (
    "idempotency_key",
    "notifier",
    "plugin",
    "event",
    "workflow_id",
    "notice_json",
    "status",
    "attempts",
    "last_error",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "sent_at",
    "targets_json",
)
_IMPORTED_LIST: Final = ", ".join(_IMPORTED)


@dataclass
class OutboxImport:
    """One pass over an SQLite outbox (`import_outbox`): its rows by status (`source`), those
    PostgreSQL did not hold by status (`new`: copied when writing), how many it held with the same
    content (`same`), and one line for each it held with other content (`conflicts`)."""

    source: Counter[str] = field(default_factory=Counter)
    new: Counter[str] = field(default_factory=Counter)
    same: int = 0
    copied: int = 0
    conflicts: list[str] = field(default_factory=list)


def _open_sqlite_outbox(path: Path) -> sqlite3.Connection | None:
    """The SQLite outbox, read only; None if there is none (no file, or a file with no table)."""
    if not path.is_file():
        return None
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        found = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'"
        ).fetchone()
    except BaseException:
        db.close()
        raise
    if found is None:
        db.close()
        return None
    return db


def _read_sqlite_page(db: sqlite3.Connection, after_id: int, limit: int) -> list[tuple[Any, ...]]:
    """(id, *the imported columns) of the next `limit` rows after `after_id`, in id order."""
    return db.execute(
        f"SELECT id, {_IMPORTED_LIST} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()


def _as_stored(row: Sequence[Any]) -> tuple[Any, ...]:
    """An SQLite row's imported columns as this table holds them: PostgreSQL text cannot hold a
    NUL, written ``\\x00`` as `_text` writes an error's (notices and targets are ASCII JSON)."""
    return tuple(
        value.replace("\x00", "\\x00") if isinstance(value, str) else value for value in row
    )


async def _sqlite_pages(path: Path) -> AsyncIterator[list[tuple[Any, ...]]]:
    db = await asyncio.to_thread(_open_sqlite_outbox, path)
    if db is None:
        return
    try:
        after = 0
        while page := await asyncio.to_thread(_read_sqlite_page, db, after, IMPORT_PAGE_ROWS):
            after = int(page[-1][0])
            yield [_as_stored(row[1:]) for row in page]
    finally:
        await asyncio.to_thread(db.close)


def _conflict(row: tuple[Any, ...], there: tuple[Any, ...]) -> str:
    differs = [name for name, a, b in zip(_IMPORTED, row, there, strict=True) if a != b]
    verb = "differs" if len(differs) == 1 else "differ"
    return (
        f"outbox row {row[0]} (notifier {row[1]}, workflow {row[4]}) is in PostgreSQL with other "
        f"content ({', '.join(differs)} {verb}): not overwritten"
    )


async def import_outbox(
    connection: psycopg.AsyncConnection[Any], sqlite_path: Path, *, write: bool
) -> OutboxImport:
    """Walk the SQLite outbox at `sqlite_path` (none there: nothing to do) and compare each row
    with the row this table holds under its idempotency key: the same content is skipped, other
    content is a conflict (never overwritten); with `write`, the rows the table does not hold are
    copied with their keys, states, attempts, errors, times and per-target results, one COPY
    transaction per page, in the SQLite order. Imported rows are claimed by nobody. `connection`
    is in autocommit mode (each page its own transaction). StoreError (redacted) on failure."""
    found = OutboxImport()
    try:
        table = write or await table_exists(connection, OUTBOX_TABLE)
        async for page in _sqlite_pages(sqlite_path):
            held: dict[str, tuple[Any, ...]] = {}
            if table:
                cursor = await connection.execute(
                    f"SELECT {_IMPORTED_LIST} FROM {OUTBOX_TABLE} WHERE idempotency_key = ANY(%s)",
                    ([row[0] for row in page],),
                )
                held = {str(row[0]): tuple(row) for row in await cursor.fetchall()}
            new: list[tuple[Any, ...]] = []
            for row in page:
                found.source[str(row[6])] += 1
                there = held.get(str(row[0]))
                if there is None:
                    found.new[str(row[6])] += 1
                    new.append(row)
                elif there == row:
                    found.same += 1
                else:
                    found.conflicts.append(_conflict(row, there))
            if write and new:
                async with (
                    connection.transaction(),
                    connection.cursor() as cursor,
                    cursor.copy(f"COPY {OUTBOX_TABLE} ({_IMPORTED_LIST}) FROM STDIN") as rows,
                ):
                    for row in new:
                        await rows.write_row(row)
                found.copied += len(new)
    except psycopg.Error as exc:
        raise StoreError(f"outbox import failed: {redactor.redact(str(exc))}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the outbox {sqlite_path}: {exc}") from exc
    return found


async def imported_counts(
    connection: psycopg.AsyncConnection[Any], sqlite_path: Path
) -> tuple[Counter[str], int]:
    """What this table holds of the SQLite outbox's rows (by their keys), by status, and how many
    rows it holds in all (the SQLite outbox's or not)."""
    counts: Counter[str] = Counter()
    try:
        if not await table_exists(connection, OUTBOX_TABLE):
            return counts, 0
        async for page in _sqlite_pages(sqlite_path):
            cursor = await connection.execute(
                f"SELECT status, count(*) FROM {OUTBOX_TABLE} WHERE idempotency_key = ANY(%s)"
                " GROUP BY status",
                ([row[0] for row in page],),
            )
            for state, count in await cursor.fetchall():
                counts[str(state)] += int(count)
        cursor = await connection.execute(f"SELECT count(*) FROM {OUTBOX_TABLE}")
        total = await cursor.fetchone()
    except psycopg.Error as exc:
        raise StoreError(f"outbox count failed: {redactor.redact(str(exc))}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the outbox {sqlite_path}: {exc}") from exc
    return counts, int(total[0]) if total else 0
