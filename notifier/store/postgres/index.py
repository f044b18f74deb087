"""The store's SQL against PostgreSQL: rows, documents, steps, search and retention.

`PostgresIndex` speaks SQL and nothing else: which outcome wins, what is held in memory and what
is retried is `store.PostgresStore`'s business. Every call fails as a StoreError naming the server
and masking the DSN's password (`connection.Database`), with the psycopg error as its cause.

Queries mirror the SQLite index's (`sqlite.index`), with the same answers:

- ``search``/``count``: the filters ANDed; newest first (``created_at DESC, id DESC``). A URL
  substring is ``url ILIKE '%needle%' ESCAPE '\\'`` with ``\\``, ``%`` and ``_`` escaped, so they
  match themselves; the ``pg_trgm`` GIN index finds the candidates, by the needle's rarest
  trigrams on a big table (`url_terms`), and each is tested with the whole needle, so the
  answer is exact. A needle PostgreSQL
  cannot hold (a NUL, a lone surrogate) matches nothing, as no stored URL can contain it.
- ``recent``: a user's ids by prefix (hex only, so no LIKE wildcard can reach it).
- retention (`purge`): rows that finished before the cutoff, never running ones, not undelivered
  ones unless asked, deleted in batches of `PURGE_BATCH`, each one transaction; their result and
  steps go with them (``ON DELETE CASCADE``). One process purges at a time (an advisory lock):
  retention's sweeps skip when another process holds it, a purge asked for by hand waits.

Text columns: PostgreSQL refuses NUL characters in text and jsonb, and psycopg cannot send a lone
surrogate; a row's text (an error message, a user name) is stored with NUL as U+FFFD and a lone
surrogate as its ``\\udc80`` escape (`_text`). The document, the truth, keeps them exactly: it is
bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

import psycopg
from loguru import logger
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from ...errors import StoreError
from ...records import DeliveryState, WorkflowRecord, WorkflowStatus
from ..query import ResultQuery
from ..sqlite.index import WorkflowExists
from .connection import Connection, Database
from .url_terms import REFRESH_S, Lookup, UrlTrigramCounts, rare_trigrams, sample_percent

__all__ = ["PURGE_BATCH", "RETENTION_LOCK_KEY", "PostgresIndex", "StoredStep", "UnknownWorkflow"]

PURGE_BATCH: Final = 500
# pg_advisory_lock's key for retention: "retain" in ASCII, as a bigint (no other lock's key).
RETENTION_LOCK_KEY: Final = int.from_bytes(b"retain", "big")

_COLUMNS: Final = (
    "workflow_id",
    "command",
    "user_id",
    "user_name",
    "guild_id",
    "channel_id",
    "ephemeral",
    "options",
    "url",
    "depth",
    "status",
    "stage",
    "progress",
    "created_at",
    "finished_at",
    "size_bytes",
    "delivery_state",
    "delivered_via",
    "delivered_at",
    "error",
    "resumes",
)
_COLUMN_LIST: Final = ", ".join(_COLUMNS)
_SELECT: Final = f"SELECT {_COLUMN_LIST} FROM workflows"
_INSERT: Final = (
    f"INSERT INTO workflows ({_COLUMN_LIST}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
)
_OUTCOME: Final = ("status", "stage", "progress", "finished_at", "size_bytes", "error")
# A delivery recorded while the result was held in memory travels with its retried write; a
# pending one never replaces a delivery another call already recorded.
_DELIVERY_SET: Final = ", ".join(
    f"{column} = CASE WHEN excluded.delivery_state = 'pending' THEN workflows.{column} "
    f"ELSE excluded.{column} END"
    for column in ("delivery_state", "delivered_via", "delivered_at")
)
# Finishing: the row (written whole if `create` never reached the database), then the document,
# in one statement; the caller runs it in a transaction and rolls back if a result was already
# stored (no row returned), so a different outcome never touches the row either.
_FINISH: Final = (
    "WITH finished AS ("
    f"{_INSERT} ON CONFLICT (workflow_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _OUTCOME)
    + f", {_DELIVERY_SET} RETURNING workflow_id) "
    "INSERT INTO results (workflow_id, document, stored_at) "
    "SELECT workflow_id, %s, %s FROM finished "
    "ON CONFLICT (workflow_id) DO NOTHING RETURNING workflow_id"
)
_HAS_DOCUMENT: Final = "status NOT IN ('running', 'lost')"


class UnknownWorkflow(StoreError):
    """A step or a resume for a workflow the database holds no row for."""


class _AlreadyStored(Exception):
    """Raised inside the finish transaction to roll it back: a result was stored before."""


def _text(value: str) -> str:
    """`value` as PostgreSQL text can hold it (see the module docstring)."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _maybe_text(value: str | None) -> str | None:
    return None if value is None else _text(value)


def _storable(text: str) -> bool:
    """False for text no stored value can equal or contain (see the module docstring)."""
    return _text(text) == text


def _row_values(record: WorkflowRecord) -> list[Any]:
    return [
        record.workflow_id,
        _text(record.command),
        record.user_id,
        _text(record.user_name),
        record.guild_id,
        record.channel_id,
        record.ephemeral,
        Jsonb({_text(str(k)): _text(str(v)) for k, v in record.options.items()}),
        _text(record.url),
        _text(record.depth),
        record.status.value,
        _text(record.stage),
        record.progress,
        record.created_at,
        record.finished_at,
        record.size_bytes,
        record.delivery_state.value,
        _maybe_text(record.delivered_via),
        record.delivered_at,
        _text(record.error),
        record.resumes,
    ]


def _record(row: Sequence[Any]) -> WorkflowRecord:
    options = row[7] if isinstance(row[7], dict) else {}
    return WorkflowRecord(
        workflow_id=row[0],
        command=row[1],
        user_id=row[2],
        user_name=row[3],
        guild_id=row[4],
        channel_id=row[5],
        ephemeral=bool(row[6]),
        options={str(k): str(v) for k, v in options.items()},
        status=WorkflowStatus(row[10]),
        stage=row[11],
        progress=row[12],
        created_at=row[13],
        finished_at=row[14],
        size_bytes=row[15],
        delivery_state=DeliveryState(row[16]),
        delivered_via=row[17],
        delivered_at=row[18],
        error=row[19],
        path=None,
        resumes=row[20],
    )


def _escape_like(needle: str) -> str:
    return needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(query: ResultQuery, lookup: Sequence[Lookup] = ()) -> tuple[str, list[Any]]:
    """The WHERE clause of `query`; `lookup`, the URL needle's rarest trigrams (`url_terms`),
    makes the trigram index look up only those, the whole needle tested on each candidate."""
    clauses = ["true"]
    params: list[Any] = []
    if query.user_id is not None:
        clauses.append("user_id = %s")
        params.append(query.user_id)
    if query.status is not None:
        clauses.append("status = %s")
        params.append(query.status.value)
    if query.command is not None:
        if _storable(query.command):
            clauses.append("command = %s")
            params.append(query.command)
        else:
            clauses.append("false")
    if query.since is not None:
        clauses.append("created_at >= %s")
        params.append(query.since)
    if query.until is not None:
        clauses.append("created_at < %s")
        params.append(query.until)
    needle = query.url_contains
    if needle:
        if _storable(needle) and lookup:
            clauses.extend("url ILIKE %s ESCAPE '\\'" for _ in lookup)
            params.extend(f"%{_escape_like(item.piece)}%" for item in lookup)
            # `url || ''` is not the indexed expression: a filter on each candidate only.
            clauses.append("(url || '') ILIKE %s ESCAPE '\\'")
            params.append(f"%{_escape_like(needle)}%")
        elif _storable(needle):
            clauses.append("url ILIKE %s ESCAPE '\\'")
            params.append(f"%{_escape_like(needle)}%")
        else:
            clauses.append("false")
    return " AND ".join(clauses), params


def _expired_where(
    cutoff: float, include_undelivered: bool, exclude: Sequence[str]
) -> tuple[str, list[Any]]:
    clauses = ["finished_at IS NOT NULL", "finished_at < %s", "status <> 'running'"]
    params: list[Any] = [cutoff]
    if not include_undelivered:
        # A lost row has nothing left to deliver, so it ages out like a delivered one.
        clauses.append("(delivery_state <> 'pending' OR status = 'lost')")
    if exclude:
        clauses.append("NOT (workflow_id = ANY(%s))")
        params.append(list(exclude))
    return " AND ".join(clauses), params


class StoredStep(NamedTuple):
    """A recorded step as the database holds it: its value still the stored JSON bytes."""

    step_index: int
    name: str
    value: bytes
    recorded_at: float


class PostgresIndex:
    """The store's statements on one `Database` (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._url_counts = UrlTrigramCounts()
        self._counting: asyncio.Task[None] | None = None

    # -- rows ----------------------------------------------------------------------------------

    async def insert(
        self,
        record: WorkflowRecord,
        inside: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> None:
        """Add a running workflow's row: WorkflowExists if the id is taken. `inside(conn)` runs
        after the insert in the same transaction (the gateway's token and job): all or none."""

        async def insert(conn: Connection) -> None:
            if inside is None:
                await conn.execute(_INSERT, _row_values(record))
                return
            # Pipeline mode: the statements go out without waiting for each answer, so the
            # gateway's transaction (row, limits, token, job, then commit) takes two round trips
            # instead of seven; an error still surfaces, and rolls it all back.
            async with conn.pipeline(), conn.transaction():
                await conn.execute(_INSERT, _row_values(record))
                await inside(conn)

        try:
            await self._db.run("add a workflow", insert, retry=False)
        except StoreError as exc:
            if isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise WorkflowExists(f"workflow {record.workflow_id} already exists") from None
            raise

    async def insert_many(self, records: Iterable[WorkflowRecord]) -> None:
        """Add many rows at once with COPY (imports, tests): one transaction."""

        async def copy(conn: Connection) -> None:
            async with (
                conn.transaction(),
                conn.cursor() as cursor,
                cursor.copy(f"COPY workflows ({_COLUMN_LIST}) FROM STDIN") as rows,
            ):
                for record in records:
                    await rows.write_row(_row_values(record))

        await self._db.run("add workflows", copy, retry=False)

    async def update_progress(self, workflow_id: str, stage: str, progress: float) -> None:
        async def update(conn: Connection) -> None:
            await conn.execute(
                "UPDATE workflows SET stage = %s, progress = %s "
                "WHERE workflow_id = %s AND status = 'running'",
                [_text(stage), progress, workflow_id],
            )

        await self._db.run("record progress", update, retry=True)

    async def get(self, workflow_id: str) -> WorkflowRecord | None:
        rows = await self._db.fetch(
            "read a workflow", f"{_SELECT} WHERE workflow_id = %s", [workflow_id]
        )
        return _record(rows[0]) if rows else None

    async def note_resume(self, workflow_id: str) -> int | None:
        """One more resume, committed; the new count, or None if there is no such row. Not
        retried: a lost acknowledgement would count the resume twice."""
        rows = await self._db.run(
            "count a resume",
            lambda conn: _fetchall(
                conn,
                "UPDATE workflows SET resumes = resumes + 1 WHERE workflow_id = %s "
                "RETURNING resumes",
                [workflow_id],
            ),
            retry=False,
        )
        return int(rows[0][0]) if rows else None

    # -- results -------------------------------------------------------------------------------

    async def write_finished(self, record: WorkflowRecord, data: bytes, stored_at: float) -> bool:
        """Write the finished row and its document in one transaction. True once committed;
        False (nothing changed) if a result is already stored under the id. StoreError if the
        database failed (the transaction then did not commit, or its acknowledgement was lost:
        the caller's retry finds out which through False and the stored document)."""

        async def write(conn: Connection) -> bool:
            try:
                async with conn.transaction():
                    cursor = await conn.execute(_FINISH, [*_row_values(record), data, stored_at])
                    if await cursor.fetchone() is None:
                        raise _AlreadyStored
            except _AlreadyStored:
                return False
            return True

        return await self._db.run("store a result", write, retry=False)

    async def document(self, workflow_id: str) -> bytes | None:
        """The stored document's bytes, or None."""
        rows = await self._db.fetch(
            "read a result", "SELECT document FROM results WHERE workflow_id = %s", [workflow_id]
        )
        return bytes(rows[0][0]) if rows else None

    async def set_delivery(
        self, workflow_id: str, state: DeliveryState, via: str, at: float
    ) -> bool:
        """Record how the result was delivered; False if there is no such row."""
        rows = await self._db.run(
            "record a delivery",
            lambda conn: _fetchall(
                conn,
                "UPDATE workflows SET delivery_state = %s, delivered_via = %s, delivered_at = %s "
                "WHERE workflow_id = %s RETURNING 1",
                [state.value, _text(via), at, workflow_id],
            ),
            retry=True,
        )
        return bool(rows)

    # -- recorded steps ------------------------------------------------------------------------

    async def record_step(
        self, workflow_id: str, index: int, name: str, value: bytes, at: float
    ) -> str | None:
        """Record a step, committed before this returns; None once written, or the name already
        recorded under `index` if it is another one (then nothing changed). UnknownWorkflow if
        the database holds no row for the workflow. Retried once: the same step again replaces
        itself, so a lost acknowledgement does no harm."""
        stored_name = _text(name)

        async def record(conn: Connection) -> str | None:
            cursor = await conn.execute(
                "INSERT INTO workflow_steps (workflow_id, step_index, name, value, recorded_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (workflow_id, step_index) DO UPDATE "
                "SET value = excluded.value, recorded_at = excluded.recorded_at "
                "WHERE workflow_steps.name = excluded.name RETURNING 1",
                [workflow_id, index, stored_name, value, at],
            )
            if await cursor.fetchone() is not None:
                return None
            cursor = await conn.execute(
                "SELECT name FROM workflow_steps WHERE workflow_id = %s AND step_index = %s",
                [workflow_id, index],
            )
            row = await cursor.fetchone()
            return str(row[0]) if row is not None else stored_name

        try:
            return await self._db.run("record a step", record, retry=True)
        except StoreError as exc:
            if isinstance(exc.__cause__, pg_errors.ForeignKeyViolation):
                raise UnknownWorkflow(f"unknown workflow {workflow_id}") from None
            raise

    async def steps(self, workflow_id: str) -> list[StoredStep]:
        rows = await self._db.fetch(
            "read recorded steps",
            "SELECT step_index, name, value, recorded_at FROM workflow_steps "
            "WHERE workflow_id = %s ORDER BY step_index",
            [workflow_id],
        )
        return [StoredStep(int(i), str(n), bytes(v), float(t)) for i, n, v, t in rows]

    # -- search --------------------------------------------------------------------------------

    def _lookup(self, query: ResultQuery) -> list[Lookup]:
        """The needle's rarest trigrams for the index (see `url_terms`); asks for fresh counts
        in the background when they are missing or old (this search goes on without them)."""
        if not query.url_contains:
            return []
        if self._url_counts.stale() and (self._counting is None or self._counting.done()):
            self._counting = asyncio.create_task(self._read_url_counts(), name="pg-url-trigrams")
        return rare_trigrams(query.url_contains, self._url_counts)

    async def close(self) -> None:
        """Stop a trigram sample still running (before the pool closes under it)."""
        if self._counting is not None and not self._counting.done():
            self._counting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._counting

    def where(self, query: ResultQuery) -> tuple[str, list[Any]]:
        """The WHERE clause `search` and `count` run for `query`, with its parameters."""
        return _where(query, self._lookup(query))

    async def read_url_counts(self) -> None:
        """Read the trigram counts now and wait for them (tools, benchmarks, tests). A read a
        search already started in the background (`_lookup`) is waited for, not sampled twice."""
        if self._counting is None or self._counting.done():
            self._counting = asyncio.create_task(self._read_url_counts(), name="pg-url-trigrams")
        await asyncio.shield(self._counting)

    async def _read_url_counts(self) -> None:
        try:
            self._url_counts = await self._db.run(
                "sample the URLs' trigrams", _sample_url_trigrams, retry=True
            )
        except StoreError as exc:
            # Searches stay exact without new ones; the counts read before (if any) stay in use,
            # and a search a minute from now asks again.
            logger.warning("store: URL trigram counts not read ({}); URL search still exact", exc)
            self._url_counts = dataclasses.replace(
                self._url_counts, read_at=time.monotonic() - REFRESH_S + 60
            )

    async def search(self, query: ResultQuery) -> list[WorkflowRecord]:
        where, params = self.where(query)
        rows = await self._db.fetch(
            "search",
            f"{_SELECT} WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
            [*params, query.limit, query.offset],
        )
        return [_record(row) for row in rows]

    async def count(self, query: ResultQuery) -> int:
        where, params = self.where(query)
        rows = await self._db.fetch(
            "count", f"SELECT count(*) FROM workflows WHERE {where}", params
        )
        return int(rows[0][0])

    async def recent(self, user_id: int, prefix: str, limit: int) -> list[WorkflowRecord]:
        """A user's workflows whose id starts with `prefix` (hex only: no LIKE wildcards)."""
        rows = await self._db.fetch(
            "list recent workflows",
            f"{_SELECT} WHERE user_id = %s AND workflow_id LIKE %s "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            [user_id, prefix + "%", limit],
        )
        return [_record(row) for row in rows]

    async def pending_delivery(self) -> list[WorkflowRecord]:
        rows = await self._db.fetch(
            "list undelivered results",
            f"{_SELECT} WHERE delivery_state = 'pending' AND finished_at IS NOT NULL "
            f"AND {_HAS_DOCUMENT} ORDER BY finished_at, id",
        )
        return [_record(row) for row in rows]

    async def running(self) -> list[WorkflowRecord]:
        rows = await self._db.fetch(
            "list running workflows",
            f"{_SELECT} WHERE status = 'running' ORDER BY created_at, id",
        )
        return [_record(row) for row in rows]

    async def durations(self, command: str, depth: str, limit: int) -> list[float]:
        if not (_storable(command) and _storable(depth)):
            return []
        rows = await self._db.fetch(
            "read durations",
            "SELECT finished_at - created_at FROM workflows "
            "WHERE status = 'completed' AND command = %s AND depth = %s "
            "AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT %s",
            [command, depth, limit],
        )
        return [max(0.0, float(row[0])) for row in rows]

    async def analyze(self) -> None:
        """Refresh the planner's statistics of the workflows table (after a bulk import)."""
        await self._db.run(
            "analyze the workflows table",
            lambda conn: _execute(conn, "ANALYZE workflows"),
            retry=True,
        )

    # -- the store's own notes -----------------------------------------------------------------

    async def get_note(self, key: str) -> str | None:
        rows = await self._db.fetch(
            "read the store's notes", "SELECT value FROM store_notes WHERE key = %s", [key]
        )
        return str(rows[0][0]) if rows else None

    async def set_note(self, key: str, value: str) -> None:
        await self._db.run(
            "write the store's notes",
            lambda conn: _execute(
                conn,
                "INSERT INTO store_notes (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            ),
            retry=True,
        )

    async def newest_activity(self) -> float | None:
        """The latest time any row records (created or finished), None without rows: each a
        lookup in its index."""
        rows = await self._db.fetch(
            "read the newest activity",
            "SELECT (SELECT max(created_at) FROM workflows), "
            "(SELECT max(finished_at) FROM workflows WHERE finished_at IS NOT NULL)",
        )
        times = [float(t) for t in rows[0] if t is not None] if rows else []
        return max(times) if times else None

    # -- retention -----------------------------------------------------------------------------

    async def count_expired(
        self, cutoff: float, *, include_undelivered: bool, exclude: Sequence[str]
    ) -> int:
        where, params = _expired_where(cutoff, include_undelivered, exclude)
        rows = await self._db.fetch(
            "count expired results", f"SELECT count(*) FROM workflows WHERE {where}", params
        )
        return int(rows[0][0])

    async def purge(
        self,
        cutoff: float,
        *,
        include_undelivered: bool,
        exclude: Sequence[str],
        wait: bool,
    ) -> int | None:
        """Delete the expired rows (their results and steps cascade), a batch per transaction,
        holding the retention lock; the number deleted. None, having deleted nothing, if another
        process holds the lock and not `wait`."""
        where, params = _expired_where(cutoff, include_undelivered, exclude)
        statement = (
            f"DELETE FROM workflows WHERE id IN (SELECT id FROM workflows WHERE {where} "
            "ORDER BY finished_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING workflow_id"
        )

        async def purge(conn: Connection) -> int | None:
            if wait:
                await conn.execute("SELECT pg_advisory_lock(%s)", [RETENTION_LOCK_KEY])
            else:
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", [RETENTION_LOCK_KEY])
                row = await cursor.fetchone()
                if row is None or not row[0]:
                    return None
            try:
                purged = 0
                while True:
                    async with conn.transaction():
                        cursor = await conn.execute(statement, [*params, PURGE_BATCH])
                        deleted = len(await cursor.fetchall())
                    purged += deleted
                    if deleted < PURGE_BATCH:
                        return purged
            finally:
                # A broken connection released the lock with its session.
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("SELECT pg_advisory_unlock(%s)", [RETENTION_LOCK_KEY])

        return await self._db.run("purge expired results", purge, retry=False)


async def _sample_url_trigrams(conn: Connection) -> UrlTrigramCounts:
    """Rows per trigram in a sample of about `SAMPLE_ROWS` rows (see `url_terms`)."""
    cursor = await conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'workflows'::regclass")
    row = await cursor.fetchone()
    percent = sample_percent(float(row[0]) if row else 0.0)
    if percent is None:
        return UrlTrigramCounts(read_at=time.monotonic())
    # One sample for both answers: the CTE is read once (it is named twice, so materialized).
    cursor = await conn.execute(
        "WITH s AS MATERIALIZED (SELECT url FROM workflows TABLESAMPLE SYSTEM (%s)) "
        "SELECT NULL, count(*) FROM s "
        "UNION ALL SELECT t, count(*) FROM s, LATERAL unnest(show_trgm(url)) t GROUP BY t",
        [percent],
    )
    sampled, rows = 0, {}
    for trigram, count in await cursor.fetchall():
        if trigram is None:
            sampled = int(count)
        else:
            rows[str(trigram)] = int(count)
    return UrlTrigramCounts(rows, sampled, time.monotonic())


async def _fetchall(
    conn: Connection, query: str, params: Sequence[Any] | None = None
) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


async def _execute(conn: Connection, query: str, params: Sequence[Any] | None = None) -> None:
    await conn.execute(query, params)
