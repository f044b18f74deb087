"""Copying an SQLite store into PostgreSQL: ``notifier store migrate --from sqlite --to postgres``.

Theory of operation
===================

Source. The SQLite store under ``storage.path`` as it lies on disk: the index's rows (read on a
read-only connection of our own, in the index's insertion order, its ``id``), each result's file
and each workflow's step file. The caller holds the store's lock (a `ResultStore` opened
``exclusive``), so no bot changes it meanwhile, and has reconciled it (`ResultStore.reconcile`:
the files are the truth, and reconciliation makes the index agree with them), so the index lists
every result and says what each one is. Rows a crashed purge had marked are not copied: they are
on their way out, and no query shows them.

What is copied, per workflow, in one transaction with its page:

- its row as the index has it: status, stage and progress, times, delivery state (how, when),
  the error, the resume count. ``path`` has no column in PostgreSQL (the document is a row);
  ``size_bytes`` is the document's length, as `PostgresStore.finish` writes it;
- its document: the file's bytes exactly, into ``results.document`` (bytea). `PostgresStore`
  decodes those bytes as `ResultStore` decodes the file, so every view (a delivery, a hand-off,
  ``/retrieve_results``, the CLI, a notice's summary) renders the same document. The bytes are
  checked first (`document.decode_document`): a file that is not a document is not copied, and
  its id is reported (`Walk.unreadable`);
- its recorded steps: the last frame of each index of its step file (what `StepLog.read` hands
  back), the value's bytes as stored, so a workflow that was running resumes from its last
  recorded step instead of starting over.

Pages. Rows are read `PAGE_ROWS` at a time. A page's new workflows are written in ONE transaction
with COPY (rows, then documents, then steps): a crash or a failure leaves whole workflows or none,
and running the command again copies what is missing. Rows keep their order (PostgreSQL's
identity column follows it), so workflows that share a ``created_at`` list as they did.

Idempotent, and nothing overwritten. An id PostgreSQL already holds is compared with the source:
its row (as PostgreSQL would hold the source's), its document's bytes, its steps. The same:
skipped (`Walk.same`). Different in anything: a `Conflict` naming the id and what differs, and
nothing is written for it. `walk(write=False)` compares without writing (the caller's dry run, and
its look before copying: with any conflict it refuses before copying anything); `walk(write=True)`
copies, comparing again whatever PostgreSQL holds by then.

Counts. `Walk.source` tallies the source as it was walked: workflows by status and by delivery
state, results (rows that promise a document), recorded steps. `target_tally` counts the same in
PostgreSQL over the source's ids only, read back after the copy, so rows PostgreSQL held before
(another store's, a bot's) neither hide nor fake a difference; `target_total` says how many rows
it holds in all.

Secrets: every failure is a StoreError naming the server by ``host:port/dbname`` with the
DSN's password masked (`connection.DatabaseAddress`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self

import psycopg
from psycopg import errors as pg_errors

from ...config import StorageSettings
from ...errors import StoreError
from ...records import WorkflowRecord, WorkflowStatus
from ...schema_migrations import SetStatus, status
from .. import files
from ..document import DocumentError, decode_document
from ..result_store import INDEX_NAME
from ..sqlite.index import _SELECT_WITH_ID as _SQLITE_SELECT_WITH_ID
from ..sqlite.index import _record as _sqlite_record
from ..step_log import STEPS_DIR, Frame, latest, read_frames
from ..threads import StoreThreads
from . import schema as _schema  # noqa: F401 - registers the store's migration set
from .connection import Connection, DatabaseAddress, connect
from .index import _COLUMN_LIST, _row_values, _text
from .index import _record as _postgres_record

__all__ = [
    "PAGE_ROWS",
    "Conflict",
    "SqliteImport",
    "Tally",
    "Walk",
]

# Workflows read, compared and written per transaction: documents of a few KB to a few hundred KB
# each keep a page's memory in megabytes, and a failure costs at most one page's work.
PAGE_ROWS: Final = 200
# Ids per query when counting what PostgreSQL holds of the source's workflows.
COUNT_PAGE_IDS: Final = 5_000
# Statuses whose row promises a document (running has none yet; lost says it is gone).
_NO_DOCUMENT: Final = frozenset({WorkflowStatus.RUNNING, WorkflowStatus.LOST})
_SQLITE_PAGE: Final = (
    f"{_SQLITE_SELECT_WITH_ID} WHERE id > ? AND purge_started_at IS NULL ORDER BY id LIMIT ?"
)
_SQLITE_IDS: Final = (
    "SELECT id, workflow_id FROM workflows WHERE id > ? AND purge_started_at IS NULL "
    "ORDER BY id LIMIT ?"
)


@dataclass
class Tally:
    """What one side holds of the source's workflows."""

    statuses: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    results: int = 0
    steps: int = 0

    @property
    def workflows(self) -> int:
        return sum(self.statuses.values())


@dataclass(frozen=True)
class Conflict:
    """An id PostgreSQL holds with other content than the source's: `differs` names what."""

    workflow_id: str
    differs: tuple[str, ...]

    def __str__(self) -> str:
        verb = "differs" if len(self.differs) == 1 else "differ"
        return (
            f"workflow {self.workflow_id} is in PostgreSQL with other content "
            f"({', '.join(self.differs)} {verb}): not overwritten"
        )


@dataclass
class Walk:
    """One pass over the source (see the module docstring): what it found and, when it wrote,
    what it copied. `new` counts workflows PostgreSQL did not hold (copied when writing)."""

    source: Tally = field(default_factory=Tally)
    new: Tally = field(default_factory=Tally)
    same: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "<id>: why", not copied
    copied: Tally = field(default_factory=Tally)


@dataclass(frozen=True, slots=True)
class _Source:
    """One workflow as the SQLite store holds it: its row, its document's bytes (None when the
    row promises none, or when they were not read), its recorded steps (last frame per index)."""

    record: WorkflowRecord
    document: bytes | None
    steps: tuple[Frame, ...]
    problem: str | None = None  # why the document cannot be copied


def _has_document(record: WorkflowRecord) -> bool:
    return record.status not in _NO_DOCUMENT


def _open_index(path: Path) -> sqlite3.Connection:
    """The index, read only (the store's lock keeps writers away; read-only keeps us honest)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def _read_page(
    db: sqlite3.Connection, after_id: int, limit: int
) -> list[tuple[int, WorkflowRecord]]:
    rows = db.execute(_SQLITE_PAGE, (after_id, limit)).fetchall()
    return [(int(row[-1]), _sqlite_record(row[:-1])) for row in rows]


def _read_ids(db: sqlite3.Connection, after_id: int, limit: int) -> list[tuple[int, str]]:
    return [(int(i), str(w)) for i, w in db.execute(_SQLITE_IDS, (after_id, limit)).fetchall()]


def _read_steps(root: Path, workflow_id: str) -> tuple[Frame, ...]:
    try:
        data = (root / STEPS_DIR / f"{workflow_id}.steps").read_bytes()
    except FileNotFoundError:
        return ()
    frames, _end = read_frames(data)
    return tuple(latest(frames))


def _read_sources(
    root: Path, rows: Sequence[WorkflowRecord], with_documents: frozenset[str]
) -> list[_Source]:
    """Steps of every row, and the document's bytes (checked) of the rows in `with_documents`."""
    found: list[_Source] = []
    for record in rows:
        steps = _read_steps(root, record.workflow_id)
        if record.workflow_id not in with_documents or not _has_document(record):
            found.append(_Source(record, None, steps))
            continue
        path = root / files.RESULTS_DIR / files.result_name(record.workflow_id)
        try:
            data = files.read_bytes(path)
            decode_document(data, record.workflow_id)
        except FileNotFoundError:
            found.append(_Source(record, None, steps, f"no result file {path}"))
            continue
        except DocumentError as exc:
            found.append(_Source(record, None, steps, f"{path} is not a result document: {exc}"))
            continue
        except OSError as exc:
            found.append(_Source(record, None, steps, f"cannot read {path}: {exc.strerror}"))
            continue
        stored = dataclasses.replace(record, size_bytes=len(data))
        found.append(_Source(stored, data, steps))
    return found


def _as_postgres_holds(record: WorkflowRecord) -> WorkflowRecord:
    """`record` as PostgreSQL would read it back once written (text made storable, no path)."""
    values = _row_values(record)
    values[7] = values[7].obj  # the options, a Jsonb when written
    return _postgres_record(values)


def _differences(expected: WorkflowRecord, found: WorkflowRecord) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(WorkflowRecord)
        if getattr(expected, f.name) != getattr(found, f.name)
    ]


def _step_rows(source: _Source) -> list[tuple[int, str, bytes, float]]:
    return [(f.index, _text(f.name), f.value, f.recorded_at) for f in source.steps]


def _tally(tally: Tally, source: _Source) -> None:
    record = source.record
    tally.statuses[record.status.value] += 1
    tally.deliveries[record.delivery_state.value] += 1
    tally.results += _has_document(record)
    tally.steps += len(source.steps)


class SqliteImport:
    """Copies the SQLite store at `root` into the PostgreSQL database of `target` on one
    connection of its own (see the module docstring). Open with `SqliteImport.open`; close with
    `close` (or ``async with``)."""

    def __init__(
        self,
        root: Path,
        conn: Connection,
        address: DatabaseAddress,
        threads: StoreThreads,
        *,
        page_rows: int,
    ) -> None:
        self._root = root
        self._conn = conn
        self.address = address
        self._threads = threads
        self._page_rows = page_rows
        self._index: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls, root: Path, target: StorageSettings, *, page_rows: int = PAGE_ROWS
    ) -> SqliteImport:
        """Connect to ``target.postgres_dsn`` (StoreError, masked, if it cannot) and open the
        SQLite index under `root` read only (StoreError naming the file if that fails)."""
        if target.postgres_dsn is None:
            raise StoreError("storage.postgres_dsn is not set: there is no PostgreSQL database")
        dsn = target.postgres_dsn.get_secret_value()
        address = DatabaseAddress.parse(dsn)
        threads = StoreThreads(work_threads=1, maintenance_threads=1)
        importer: SqliteImport | None = None
        try:
            conn = await connect(dsn, address)
            importer = cls(root, conn, address, threads, page_rows=page_rows)
            index = root / INDEX_NAME
            try:
                importer._index = await threads.work(_open_index, index)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the SQLite index {index}: {exc}") from exc
        except BaseException:
            if importer is not None:
                await importer.close()
            else:
                threads.close()
            raise
        return importer

    async def close(self) -> None:
        try:
            if self._index is not None:
                index, self._index = self._index, None
                await self._threads.work(index.close)
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
        finally:
            self._threads.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connection(self) -> Connection:
        """The connection to the target (the outbox's rows are copied on it too)."""
        return self._conn

    # -- PostgreSQL ----------------------------------------------------------------------------

    async def _pg[T](self, action: str, work: Callable[[], Awaitable[T]]) -> T:
        """`work()` on the connection; psycopg's failure as a StoreError naming the server."""
        try:
            return await work()
        except psycopg.Error as exc:
            failure = StoreError(
                f"PostgreSQL {self.address.where}: cannot {action}: {self.address.describe(exc)}"
            )
            raise failure from exc

    async def _fetch(self, action: str, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async def fetch() -> list[tuple[Any, ...]]:
            cursor = await self._conn.execute(query, params)
            return await cursor.fetchall()

        return await self._pg(action, fetch)

    async def schema_status(self) -> list[SetStatus]:
        """Where each migration set of the target stands (for a dry run, which migrates nothing)."""
        return await self._pg("read the schema version", lambda: status(self._conn))

    async def _target_has_tables(self) -> bool:
        rows = await self._fetch(
            "look for the store's tables", "SELECT to_regclass('results') IS NOT NULL", []
        )
        return bool(rows and rows[0][0])

    async def _held(self, ids: list[str]) -> dict[str, WorkflowRecord]:
        rows = await self._fetch(
            "read workflows",
            f"SELECT {_COLUMN_LIST} FROM workflows WHERE workflow_id = ANY(%s)",
            [ids],
        )
        return {str(row[0]): _postgres_record(row) for row in rows}

    async def _held_content(
        self, ids: list[str]
    ) -> tuple[dict[str, bytes], dict[str, list[tuple[int, str, bytes, float]]]]:
        documents = {
            str(w): bytes(d)
            for w, d in await self._fetch(
                "read results",
                "SELECT workflow_id, document FROM results WHERE workflow_id = ANY(%s)",
                [ids],
            )
        }
        steps: dict[str, list[tuple[int, str, bytes, float]]] = {}
        for w, i, n, v, t in await self._fetch(
            "read recorded steps",
            "SELECT workflow_id, step_index, name, value, recorded_at FROM workflow_steps "
            "WHERE workflow_id = ANY(%s) ORDER BY workflow_id, step_index",
            [ids],
        ):
            steps.setdefault(str(w), []).append((int(i), str(n), bytes(v), float(t)))
        return documents, steps

    async def _write(self, sources: Sequence[_Source]) -> None:
        """The page's new workflows, rows then documents then steps, in one transaction."""

        async def write() -> None:
            async with self._conn.transaction(), self._conn.cursor() as cursor:
                async with cursor.copy(f"COPY workflows ({_COLUMN_LIST}) FROM STDIN") as rows:
                    for source in sources:
                        await rows.write_row(_row_values(source.record))
                async with cursor.copy(
                    "COPY results (workflow_id, document, stored_at) FROM STDIN"
                ) as documents:
                    for source in sources:
                        if source.document is not None:
                            record = source.record
                            stored_at = record.finished_at or record.created_at
                            await documents.write_row(
                                (record.workflow_id, source.document, stored_at)
                            )
                async with cursor.copy(
                    "COPY workflow_steps (workflow_id, step_index, name, value, recorded_at) "
                    "FROM STDIN"
                ) as steps:
                    for source in sources:
                        for row in _step_rows(source):
                            await steps.write_row((source.record.workflow_id, *row))

        try:
            await self._pg("copy workflows", write)
        except StoreError as exc:
            if isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise StoreError(
                    f"PostgreSQL {self.address.where}: workflows of this store appeared there "
                    "while they were being copied (another process writes them?): nothing of "
                    "this page was copied; run the command again, it copies what is missing"
                ) from None
            raise

    # -- the walk ------------------------------------------------------------------------------

    async def _pages(self) -> AsyncIterator[list[WorkflowRecord]]:
        """The source's rows, page by page, in the index's order."""
        assert self._index is not None
        after = 0
        while True:
            page: list[tuple[int, WorkflowRecord]] = await self._threads.work(
                _read_page, self._index, after, self._page_rows
            )
            if not page:
                return
            after = page[-1][0]
            yield [record for _id, record in page]

    async def walk(
        self,
        *,
        write: bool,
        read_documents: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Walk:
        """One pass over the source: compare each workflow with what PostgreSQL holds under its
        id, and, if `write`, copy the ones it does not hold (see the module docstring).

        Documents are read (and checked) for what is compared and what is written; without
        `write`, those of workflows PostgreSQL does not hold only if `read_documents` (a dry
        run's look, which reports the unreadable ones). `progress(rows)` is called after each
        page with the rows walked so far."""
        found = Walk()
        tables = write or await self._target_has_tables()
        walked = 0
        async for page in self._pages():
            ids = [record.workflow_id for record in page]
            held = await self._held(ids) if tables else {}
            wanted = frozenset(ids if write or read_documents else held)
            sources = await self._threads.work(_read_sources, self._root, page, wanted)
            new: list[_Source] = []
            for source in sources:
                _tally(found.source, source)
                if source.record.workflow_id not in held:
                    if source.problem is not None:
                        found.unreadable.append(f"{source.record.workflow_id}: {source.problem}")
                        continue
                    _tally(found.new, source)
                    new.append(source)
            if held:
                await self._compare(sources, held, found)
            if write and new:
                await self._write(new)
                for source in new:
                    _tally(found.copied, source)
            walked += len(page)
            if progress is not None:
                progress(walked)
        return found

    async def _compare(
        self, sources: Sequence[_Source], held: dict[str, WorkflowRecord], found: Walk
    ) -> None:
        ids = [s.record.workflow_id for s in sources if s.record.workflow_id in held]
        documents, steps = await self._held_content(ids)
        for source in sources:
            workflow_id = source.record.workflow_id
            there = held.get(workflow_id)
            if there is None:
                continue
            if source.problem is not None:
                found.unreadable.append(f"{workflow_id}: {source.problem}")
                continue
            differs = _differences(_as_postgres_holds(source.record), there)
            if documents.get(workflow_id) != source.document:
                differs.append("document")
            if steps.get(workflow_id, []) != _step_rows(source):
                differs.append("steps")
            if differs:
                found.conflicts.append(Conflict(workflow_id, tuple(differs)))
            else:
                found.same += 1

    # -- counting ------------------------------------------------------------------------------

    async def target_tally(self) -> Tally:
        """What PostgreSQL holds of the source's workflows (their ids only), counted there."""
        assert self._index is not None
        tally = Tally()
        if not await self._target_has_tables():
            return tally
        after = 0
        while True:
            page: list[tuple[int, str]] = await self._threads.work(
                _read_ids, self._index, after, COUNT_PAGE_IDS
            )
            if not page:
                return tally
            after = page[-1][0]
            ids = [workflow_id for _id, workflow_id in page]
            for state, delivery, count in await self._fetch(
                "count workflows",
                "SELECT status, delivery_state, count(*) FROM workflows "
                "WHERE workflow_id = ANY(%s) GROUP BY status, delivery_state",
                [ids],
            ):
                tally.statuses[str(state)] += int(count)
                tally.deliveries[str(delivery)] += int(count)
            [(results,)] = await self._fetch(
                "count results", "SELECT count(*) FROM results WHERE workflow_id = ANY(%s)", [ids]
            )
            [(steps,)] = await self._fetch(
                "count recorded steps",
                "SELECT count(*) FROM workflow_steps WHERE workflow_id = ANY(%s)",
                [ids],
            )
            tally.results += int(results)
            tally.steps += int(steps)

    async def target_total(self) -> int:
        """Every workflow PostgreSQL holds, the source's or not."""
        if not await self._target_has_tables():
            return 0
        [(count,)] = await self._fetch("count workflows", "SELECT count(*) FROM workflows", [])
        return int(count)
