"""The SQLite index of workflows: what is running, what finished, what was delivered, and search.

The index is a cache of the result files plus the state that changes after a result is written
(progress while running, delivery afterwards). Reconciliation can rebuild the finished rows from the
files, so the files are written first and the index second.

Settings and why:

- WAL: readers (the CLI, autocomplete) never block the writer, and a commit is one append.
- ``synchronous=FULL`` for what only the index knows: a workflow started (``insert``: after a
  crash it is the one trace that lets the user hear it was interrupted), delivery state (lost, it
  means a duplicate delivery), a purge's "purging" mark (lost, a row whose file is gone without
  the mark that explains it, i.e. a false "lost"), and a workflow's recorded steps and resume
  count (lost, a step runs twice, or a poison workflow is resumed once too often). Writes go
  through `notifier.groupcommit.SQLiteWriter`, so writes that arrive together (many workflows
  finishing, reporting progress or recording steps at once) share one commit and one fsync, and
  a progress row still queued is replaced by the newer one instead of written twice.
- ``synchronous=NORMAL`` (no fsync; ``durable=False`` in the writer) for what can be rebuilt:
  finished rows, whose file was fsynced first and which reconciliation re-indexes from the file
  if a power cut rolls the row back to "running" (delivery then starts again: twice beats
  never), and progress, which is advisory. A crash of the process loses none of these; the next
  fsynced commit makes every earlier one durable too. This took the index's fsync off the path
  of a finished result (BENCHMARKS.md, persistence).
- ``busy_timeout``: the CLI may write (purge) while the bot runs; waits happen in aiosqlite's
  thread, not on the event loop.
- ``id INTEGER PRIMARY KEY``: a stable rowid, which the external-content FTS table relies on (a
  plain rowid may be renumbered by VACUUM).

Indexes are chosen for one million rows: id lookup (unique), a user's results newest first
(``user_id, created_at``), everyone's results by time (``created_at``), by status (``status,
created_at``), retention (``finished_at``), undelivered results (partial), and duration history
(partial on completed rows). A URL substring uses an FTS5 trigram table when SQLite has one (three
characters or more); shorter needles, or no FTS5, fall back to ``LIKE`` with ``%`` and ``_``
escaped, which scans.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import sqlite3
import time
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite
from loguru import logger

from ...errors import StoreError
from ...groupcommit.damaged import QUICK_CHECK, integrity_problem, is_damaged
from ...groupcommit.sqlite_writer import SQLiteWriter
from ...records import DeliveryState, WorkflowRecord, WorkflowStatus
from ..query import ResultQuery
from ..step_log import Frame
from ..threads import StoreThreads
from .schema import BLOCK_BITS, BUSY_TIMEOUT_MS, prepare
from .url_terms import TrigramCounts, fts_phrase, read_trigram_counts, trigram_query

__all__ = ["IndexDamaged", "ResultIndex", "RowState", "WorkflowExists"]

_CHUNK: Final = 500  # ids per IN (...) list: far below SQLite's variable limit
_WRITER_PRAGMAS: Final = (f"busy_timeout = {BUSY_TIMEOUT_MS}", "synchronous = FULL")

_FIRST_PAGE: Final = 64
_MAX_PAGE: Final = 4_096

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
    "path",
    "resumes",
)
_SELECT: Final = "SELECT " + ", ".join(_COLUMNS) + " FROM workflows"
_CREATED_AT: Final = _COLUMNS.index("created_at")
_SELECT_WITH_ID: Final = "SELECT " + ", ".join(_COLUMNS) + ", id FROM workflows"
_INSERT: Final = (
    f"INSERT INTO workflows ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
# On re-finishing or re-indexing an existing row, everything but the delivery bookkeeping (and the
# resume count) comes from the new record: delivery happened (or not) after the result was written
# and stays true; a result file does not know how often its workflow was resumed.
_NOT_UPDATED: Final = frozenset(
    {"workflow_id", "delivery_state", "delivered_via", "delivered_at", "resumes"}
)
_UPSERT: Final = (
    _INSERT
    + " ON CONFLICT (workflow_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in _NOT_UPDATED)
    + ", purge_started_at = NULL"
)
# Finishing a row this process created: only the outcome columns, so SQLite leaves alone the
# indexes on the identity columns (user, command, created_at), which an upsert naming every column
# rewrites even when the values are unchanged (5 pages a commit instead of 8).
_OUTCOME_COLUMNS: Final = (
    "status",
    "stage",
    "progress",
    "finished_at",
    "size_bytes",
    "error",
    "path",
)
_OUTCOME_AT: Final = tuple(_COLUMNS.index(c) for c in _OUTCOME_COLUMNS)  # in _row_values
_FINISH: Final = (
    "UPDATE workflows SET "
    + ", ".join(f"{c} = ?" for c in _OUTCOME_COLUMNS)
    + ", purge_started_at = NULL WHERE workflow_id = ?"
)
_LIVE: Final = "purge_started_at IS NULL"
_HAS_DOCUMENT: Final = "status NOT IN ('running', 'lost')"


class WorkflowExists(StoreError):
    """`create` was given an id the index already holds."""


class IndexDamaged(StoreError):
    """The index file is damaged (SQLite says: not a database, or malformed): no retry cures it;
    the store moves it to quarantine and rebuilds it from the result files."""


@dataclass(frozen=True, slots=True)
class RowState:
    """The part of a row reconciliation compares with the files."""

    status: WorkflowStatus
    path: str | None
    size_bytes: int | None
    delivery_state: DeliveryState = DeliveryState.PENDING


def _row_values(record: WorkflowRecord) -> tuple[Any, ...]:
    return (
        record.workflow_id,
        record.command,
        record.user_id,
        record.user_name,
        record.guild_id,
        record.channel_id,
        int(record.ephemeral),
        json.dumps(record.options, ensure_ascii=False, sort_keys=True),
        record.url,
        record.depth,
        record.status.value,
        record.stage,
        record.progress,
        record.created_at,
        record.finished_at,
        record.size_bytes,
        record.delivery_state.value,
        record.delivered_via,
        record.delivered_at,
        record.error,
        record.path,
        record.resumes,
    )


def _options(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _record(row: Sequence[Any]) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=row[0],
        command=row[1],
        user_id=row[2],
        user_name=row[3],
        guild_id=row[4],
        channel_id=row[5],
        ephemeral=bool(row[6]),
        options=_options(row[7]),
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
        path=row[20],
        resumes=row[21],
    )


def _storable(text: str) -> bool:
    """False for text SQLite cannot take (a lone surrogate is not UTF-8), so nothing stored
    equals or contains it: a filter on it matches nothing instead of raising."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _scan_users_rows(query: ResultQuery) -> bool:
    """True when a URL filter is cheaper as LIKE over one user's rows than through FTS.

    A user's rows are a small share of the index (the user's own results), read newest first
    through ``workflows_user_created``: LIKE over them stops at the first page of hits, and even a
    needle the user never used costs one pass over that user's rows, where the FTS walk would
    go through every other user's matches too. Only for ASCII needles, where LIKE's case folding
    (ASCII only) and the trigram tokenizer's agree.
    """
    needle = query.url_contains
    return query.user_id is not None and needle is not None and needle.isascii()


def _escape_like(needle: str) -> str:
    return needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(items: Sequence[str]) -> str:
    return ", ".join("?" * len(items))


@contextlib.contextmanager
def _sqlite_errors(action: str) -> Iterator[None]:
    """Callers catch StoreError by meaning; sqlite3's exception types stay inside this module."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"index: cannot {action}: {exc}") from exc


class ResultIndex:
    """Reads on one aiosqlite connection; writes through one `SQLiteWriter` (its own thread and
    connection), whose group commits let a crowd of finishes and progress rows share fsyncs."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        writer: SQLiteWriter,
        *,
        fts: bool,
        path: Path,
        threads: StoreThreads,
        own_threads: bool,
    ) -> None:
        self._db = db
        self._writer = writer
        self._fts = fts
        self._path = path
        self._threads = threads
        self._own_threads = own_threads
        self._counts = TrigramCounts()
        self._counting: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, path: Path, *, threads: StoreThreads | None = None, check: bool = False
    ) -> ResultIndex:
        """Open (creating) the index at `path`. `threads`: the store's, for the URL search's
        statistics (without them the index makes its own). `check`: also read every page
        (``PRAGMA quick_check``; the bot at start, not the CLI). IndexDamaged if SQLite finds
        the file damaged, StoreError for any other failure."""
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
            try:
                if check:  # before `prepare` writes: a damaged file is quarantined as found
                    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                    problem = integrity_problem(await db.execute_fetchall(QUICK_CHECK))
                    if problem is not None:
                        raise IndexDamaged(f"index {path} is damaged: {problem}")
                fts = await prepare(db)
                writer = await SQLiteWriter.open(path, _WRITER_PRAGMAS, name="index")
            except BaseException:
                await db.close()
                raise
        except sqlite3.Error as exc:
            if is_damaged(exc):
                raise IndexDamaged(f"index {path} is damaged: {exc}") from exc
            raise StoreError(f"index: cannot open {path}: {exc}") from exc
        own = threads is None
        if threads is None:
            threads = StoreThreads(work_threads=1, maintenance_threads=1)
        return cls(db, writer, fts=fts, path=path, threads=threads, own_threads=own)

    async def close(self) -> None:
        if self._counting is not None:
            self._counting.cancel()  # its thread finishes on its own connection
        with _sqlite_errors("close"):
            try:
                await self._writer.close()
            finally:
                await self._db.close()
                if self._own_threads:
                    self._threads.close()

    async def url_search_ready(self) -> None:
        """Read the trigram counts now if they are missing or stale, and wait for them (URL
        searches are exact before, only slower); for tools and benchmarks that want the steady
        state."""
        self._refresh_counts()
        if self._counting is not None:
            await asyncio.shield(self._counting)

    def _refresh_counts(self) -> None:
        """Read the trigram counts in the background if they are missing or stale (see
        url_terms). Not at open: the CLI and bots that never search by URL do not pay for it."""
        if not self._fts or self._counting is not None:
            return
        if not self._counts.stale(time.monotonic()):
            return
        self._counting = asyncio.create_task(self._read_counts(), name="index-trigram-counts")

    async def _read_counts(self) -> None:
        try:
            self._counts = await self._threads.maintenance(read_trigram_counts, self._path)
        except sqlite3.Error as exc:
            logger.warning("index: trigram counts not read ({}); URL search still exact", exc)
            self._counts = TrigramCounts(self._counts.docs, time.monotonic())
        finally:
            self._counting = None

    async def _write(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        latest_of: Hashable | None = None,
        durable: bool = True,
    ) -> int:
        written = await self._writer.execute(sql, params, latest_of=latest_of, durable=durable)
        return written.rowcount

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    # -- rows ----------------------------------------------------------------------------------

    async def insert(self, record: WorkflowRecord) -> None:
        """Add a new row; StoreError if the id exists (ids are random: a repeat is a bug)."""
        try:
            await self._write(_INSERT, _row_values(record))
        except sqlite3.IntegrityError:
            raise WorkflowExists(f"workflow {record.workflow_id} already exists") from None
        except sqlite3.Error as exc:
            raise StoreError(f"index: cannot add workflow: {exc}") from exc

    async def insert_many(self, records: Iterable[WorkflowRecord]) -> None:
        """Add many rows in one transaction (imports, tests): one fsync instead of thousands."""
        values = [_row_values(r) for r in records]
        with _sqlite_errors("add workflows"):
            await self._writer.run(lambda conn: conn.executemany(_INSERT, values).close())

    async def upsert_finished(self, record: WorkflowRecord) -> None:
        """Write a finished (or re-indexed) row, keeping any delivery state already recorded."""
        with _sqlite_errors("record the result"):
            await self._write(_UPSERT, _row_values(record), durable=False)

    async def record_finished(self, record: WorkflowRecord) -> None:
        """Write the outcome of a workflow whose row holds the same identity (the record came
        from `insert` or from this index); a missing row is written whole, as `upsert_finished`."""
        row = _row_values(record)
        values = [row[i] for i in _OUTCOME_AT]
        with _sqlite_errors("record the result"):
            if await self._write(_FINISH, (*values, record.workflow_id), durable=False):
                return
        await self.upsert_finished(record)

    async def update_progress(self, workflow_id: str, stage: str, progress: float) -> None:
        with _sqlite_errors("record progress"):
            await self._write(
                "UPDATE workflows SET stage = ?, progress = ? "
                "WHERE workflow_id = ? AND status = 'running'",
                (stage, progress, workflow_id),
                latest_of=("progress", workflow_id),
                durable=False,
            )

    async def set_delivery(
        self,
        workflow_id: str,
        state: DeliveryState,
        via: str | None,
        at: float,
        *,
        durable: bool = True,
    ) -> bool:
        """`durable=False` for a row restored from its delivery mark (reconciliation): the mark
        would restore it again if a power cut rolled the commit back."""
        with _sqlite_errors("record delivery"):
            changed = await self._write(
                "UPDATE workflows SET delivery_state = ?, delivered_via = ?, delivered_at = ? "
                f"WHERE workflow_id = ? AND {_LIVE}",
                (state.value, via, at, workflow_id),
                durable=durable,
            )
        return changed > 0

    async def get(self, workflow_id: str) -> WorkflowRecord | None:
        with _sqlite_errors("read a workflow"):
            rows = await self._fetch(f"{_SELECT} WHERE workflow_id = ? AND {_LIVE}", (workflow_id,))
        return _record(rows[0]) if rows else None

    # -- steps and resumes ---------------------------------------------------------------------

    async def legacy_steps(self) -> list[tuple[str, Frame]] | None:
        """The steps an index of schema version 4 held as rows (workflow id, frame), in order;
        None if it has no such table (a version 5 index: steps are files, `step_log`)."""
        with _sqlite_errors("read the steps of an older index"):
            tables = await self._fetch(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'workflow_steps'"
            )
            if not tables:
                return None
            rows = await self._fetch(
                "SELECT workflow_id, step_index, name, recorded_at, value FROM workflow_steps "
                "ORDER BY workflow_id, step_index"
            )
        return [
            (str(wid), Frame(int(index), str(name), float(at), bytes(value)))
            for wid, index, name, at, value in rows
        ]

    async def drop_legacy_steps(self) -> None:
        """Drop version 4's step table, once its rows are step files."""
        with _sqlite_errors("drop the older index's step table"):
            await self._writer.execute("DROP TABLE IF EXISTS workflow_steps")

    async def note_resume(self, workflow_id: str) -> int | None:
        """Count one more resume, durably; the new count, or None if there is no such row."""
        with _sqlite_errors("count a resume"):
            written = await self._writer.execute(
                f"UPDATE workflows SET resumes = resumes + 1 WHERE workflow_id = ? AND {_LIVE} "
                "RETURNING resumes",
                (workflow_id,),
            )
        return int(written.rows[0][0]) if written.rows else None

    # -- search --------------------------------------------------------------------------------

    def _where(self, query: ResultQuery, *, url: bool = True) -> tuple[str, list[Any]]:
        """The WHERE clause for `query`; without its URL filter when `url` is False."""
        clauses = [_LIVE]
        params: list[Any] = []
        if query.user_id is not None:
            clauses.append("user_id = ?")
            params.append(query.user_id)
        if query.status is not None:
            clauses.append("status = ?")
            params.append(query.status.value)
        if query.command is not None:
            if _storable(query.command):
                clauses.append("command = ?")
                params.append(query.command)
            else:
                clauses.append("0")
        if query.since is not None:
            clauses.append("created_at >= ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("created_at < ?")
            params.append(query.until)
        needle = query.url_contains
        if needle and url:
            match = self._fts_match(needle)
            if match is not None and not _scan_users_rows(query):
                clauses.append(
                    "id IN (SELECT rowid FROM workflow_urls WHERE workflow_urls MATCH ?)"
                )
                params.append(match)
            elif not _storable(needle) or "\x00" in needle:
                # No stored URL contains it: URLs with control characters are refused, and FTS5
                # and LIKE both stop reading at a NUL (LIKE would then match every URL).
                clauses.append("0")
            else:
                clauses.append("url LIKE ? ESCAPE '\\'")
                params.append(f"%{_escape_like(needle)}%")
        return " AND ".join(clauses), params

    def _fts_match(self, needle: str) -> str | None:
        """The FTS5 query for a URL substring, or None where FTS cannot answer it."""
        if not self._fts or len(needle) < 3 or not _storable(needle) or "\x00" in needle:
            return None
        # A quoted FTS5 string is a phrase of trigrams: exactly a substring match.
        return fts_phrase(needle)

    async def search(self, query: ResultQuery) -> list[WorkflowRecord]:
        match = self._fts_match(query.url_contains) if query.url_contains else None
        with _sqlite_errors("search"):
            if match is not None and not _scan_users_rows(query):
                rows = await self._search_url(query, match)
            else:
                where, params = self._where(query)
                rows = await self._fetch(
                    f"{_SELECT} WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                    [*params, query.limit, query.offset],
                )
        return [_record(row) for row in rows]

    async def _search_url(self, query: ResultQuery, match: str) -> list[Any]:
        """One page of a URL search without collecting every FTS match.

        Asking SQLite for ``id IN (every match) ORDER BY created_at`` makes it fetch and sort all
        matches (200,000 for a common path segment: 0.2 to 0.5 s). Instead, walk the matches
        newest id first, a page at a time (growing), keep the best ``offset + limit`` rows that
        pass the other filters, and stop once `workflow_blocks` says no row below the walk was
        created later than the worst row kept. Rows that share ``created_at`` sort by id, so the
        rows below the walk come after them, as ORDER BY created_at DESC, id DESC wants. For an
        ASCII needle the walk goes over the rows holding its rarest trigrams, each tested with
        ``instr`` (`url_terms` says why); otherwise over the exact phrase matches.
        """
        where, params = self._where(query, url=False)
        needle = query.url_contains or ""
        if needle.isascii():
            # Candidates by the needle's rarest trigrams, then the exact test (see url_terms).
            self._refresh_counts()
            match = trigram_query(needle, self._counts)
            where += " AND instr(lower(url), ?) > 0"
            params.append(needle.lower())
        need = query.offset + query.limit
        best: list[Any] = []
        below: int | None = None
        page = _FIRST_PAGE
        while True:
            ids = [
                row[0]
                for row in await self._fetch(
                    "SELECT rowid FROM workflow_urls WHERE workflow_urls MATCH ?"
                    + ("" if below is None else " AND rowid < ?")
                    + " ORDER BY rowid DESC LIMIT ?",
                    [match, page] if below is None else [match, below, page],
                )
            ]
            if not ids:
                break
            found = await self._fetch(
                f"{_SELECT_WITH_ID} WHERE {where} AND id IN (SELECT value FROM json_each(?))",
                [*params, json.dumps(ids)],
            )
            best = heapq.nlargest(need, best + found, key=lambda r: (r[_CREATED_AT], r[-1]))
            below = ids[-1]
            if len(ids) < page:
                break
            if len(best) >= need:
                rows = await self._fetch(
                    "SELECT max(newest) FROM workflow_blocks WHERE block <= ?",
                    ((below - 1) >> BLOCK_BITS,),
                )
                newest_below = rows[0][0]
                if newest_below is None or best[-1][_CREATED_AT] >= newest_below:
                    break
            page = min(page * 4, _MAX_PAGE)
        return [row[:-1] for row in best[query.offset :]]

    async def count(self, query: ResultQuery) -> int:
        where, params = self._where(query)
        with _sqlite_errors("count"):
            rows = await self._fetch(f"SELECT count(*) FROM workflows WHERE {where}", params)
        return int(rows[0][0])

    async def recent(self, user_id: int, prefix: str, limit: int) -> list[WorkflowRecord]:
        """A user's workflows whose id starts with `prefix` (hex only: no LIKE wildcards)."""
        with _sqlite_errors("list recent workflows"):
            rows = await self._fetch(
                f"{_SELECT} WHERE user_id = ? AND workflow_id LIKE ? AND {_LIVE} "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                (user_id, prefix + "%", limit),
            )
        return [_record(row) for row in rows]

    async def pending_delivery(self) -> list[WorkflowRecord]:
        with _sqlite_errors("list undelivered results"):
            rows = await self._fetch(
                f"{_SELECT} WHERE delivery_state = 'pending' AND finished_at IS NOT NULL "
                f"AND {_HAS_DOCUMENT} AND {_LIVE} ORDER BY finished_at, id"
            )
        return [_record(row) for row in rows]

    async def running(self) -> list[WorkflowRecord]:
        with _sqlite_errors("list running workflows"):
            rows = await self._fetch(
                f"{_SELECT} WHERE status = 'running' AND {_LIVE} ORDER BY created_at, id"
            )
        return [_record(row) for row in rows]

    async def durations(self, command: str, depth: str, limit: int) -> list[float]:
        with _sqlite_errors("read durations"):
            rows = await self._fetch(
                "SELECT finished_at - created_at FROM workflows "
                "WHERE status = 'completed' AND command = ? AND depth = ? "
                "AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
                (command, depth, limit),
            )
        return [max(0.0, float(row[0])) for row in rows]

    # -- reconciliation ------------------------------------------------------------------------

    async def states(self, workflow_ids: Sequence[str]) -> dict[str, RowState]:
        found: dict[str, RowState] = {}
        with _sqlite_errors("read workflow states"):
            for chunk in _chunks(workflow_ids):
                rows = await self._fetch(
                    "SELECT workflow_id, status, path, size_bytes, delivery_state FROM workflows "
                    f"WHERE workflow_id IN ({_marks(chunk)}) AND {_LIVE}",
                    chunk,
                )
                for wid, status, path, size, delivery in rows:
                    found[wid] = RowState(
                        WorkflowStatus(status), path, size, DeliveryState(delivery)
                    )
        return found

    async def ids_with_documents(self, after: str, limit: int) -> list[str]:
        """Ids of rows that say a document exists, in id order after `after` (keyset paging)."""
        with _sqlite_errors("list finished workflows"):
            rows = await self._fetch(
                f"SELECT workflow_id FROM workflows WHERE workflow_id > ? AND {_HAS_DOCUMENT} "
                f"AND {_LIVE} ORDER BY workflow_id LIMIT ?",
                (after, limit),
            )
        return [row[0] for row in rows]

    async def mark_lost(self, workflow_ids: Sequence[str], error: str) -> int:
        def mark(conn: sqlite3.Connection) -> int:
            changed = 0
            for chunk in _chunks(workflow_ids):
                cursor = conn.execute(
                    f"UPDATE workflows SET status = 'lost', error = ? "
                    f"WHERE workflow_id IN ({_marks(chunk)}) AND {_HAS_DOCUMENT}",
                    [error, *chunk],
                )
                changed += cursor.rowcount
                cursor.close()
            return changed

        with _sqlite_errors("mark results lost"):
            changed: int = await self._writer.run(mark)
        return changed

    # -- the store's own notes ----------------------------------------------------------------

    async def get_note(self, key: str) -> str | None:
        """A value the store keeps about itself (retention's last sweep), or None."""
        with _sqlite_errors("read the store's notes"):
            rows = await self._fetch("SELECT value FROM store_notes WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_note(self, key: str, value: str) -> None:
        with _sqlite_errors("write the store's notes"):
            await self._write(
                "INSERT INTO store_notes (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    async def newest_activity(self) -> float | None:
        """The latest time any row records (a workflow created or finished), None if no row:
        each a lookup in its index, not a scan."""
        with _sqlite_errors("read the newest activity"):
            created = await self._fetch("SELECT max(created_at) FROM workflows")
            finished = await self._fetch(
                "SELECT max(finished_at) FROM workflows WHERE finished_at IS NOT NULL"
            )
        times = [
            float(rows[0][0]) for rows in (created, finished) if rows and rows[0][0] is not None
        ]
        return max(times) if times else None

    # -- retention -----------------------------------------------------------------------------

    def _expired_where(
        self, cutoff: float, include_undelivered: bool, exclude: Sequence[str]
    ) -> tuple[str, list[Any]]:
        clauses = [
            "finished_at IS NOT NULL",
            "finished_at < ?",
            "status != 'running'",
            _LIVE,
        ]
        params: list[Any] = [cutoff]
        if not include_undelivered:
            # A lost row has nothing left to deliver, so it ages out like a delivered one.
            clauses.append("(delivery_state != 'pending' OR status = 'lost')")
        if exclude:
            clauses.append(f"workflow_id NOT IN ({_marks(exclude)})")
            params.extend(exclude)
        return " AND ".join(clauses), params

    async def expired(
        self, cutoff: float, *, include_undelivered: bool, exclude: Sequence[str], limit: int
    ) -> list[str]:
        where, params = self._expired_where(cutoff, include_undelivered, exclude)
        with _sqlite_errors("list expired results"):
            rows = await self._fetch(
                f"SELECT workflow_id FROM workflows WHERE {where} ORDER BY finished_at LIMIT ?",
                [*params, limit],
            )
        return [row[0] for row in rows]

    async def count_expired(
        self, cutoff: float, *, include_undelivered: bool, exclude: Sequence[str]
    ) -> int:
        where, params = self._expired_where(cutoff, include_undelivered, exclude)
        with _sqlite_errors("count expired results"):
            rows = await self._fetch(f"SELECT count(*) FROM workflows WHERE {where}", params)
        return int(rows[0][0])

    async def mark_purging(self, workflow_ids: Sequence[str], at: float) -> None:
        """Step 1 of a purge, committed before any file is deleted (see the store's docstring)."""

        def mark(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(workflow_ids):
                conn.execute(
                    f"UPDATE workflows SET purge_started_at = ? "
                    f"WHERE workflow_id IN ({_marks(chunk)})",
                    [at, *chunk],
                ).close()

        with _sqlite_errors("mark results for purging"):
            await self._writer.run(mark)

    async def purging(self) -> list[str]:
        with _sqlite_errors("list half-done purges"):
            rows = await self._fetch(
                "SELECT workflow_id FROM workflows WHERE purge_started_at IS NOT NULL"
            )
        return [row[0] for row in rows]

    async def delete(self, workflow_ids: Sequence[str]) -> None:
        """The rows, in one transaction (their step files went first: `Maintenance`)."""

        def delete(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(workflow_ids):
                conn.execute(
                    f"DELETE FROM workflows WHERE workflow_id IN ({_marks(chunk)})", chunk
                ).close()

        with _sqlite_errors("delete purged rows"):
            await self._writer.run(delete)
