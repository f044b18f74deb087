"""`PostgresStore`: the result store in one PostgreSQL database that several processes share.

The same narrow methods as `ResultStore` (`contract.Store`), with the same semantics; where the
two differ it is because there are no files here, and each difference is said below.

Write-ahead
-----------
`create` inserts the running row before a workflow starts. `finish` writes the finished row and
the result document in ONE transaction (`index.PostgresIndex.write_finished`): a reader sees
both or neither, so there is no file-without-row or row-without-file for a reconciliation to
repair. A result is written once: the same outcome again is a no-op, another is refused
(StoreError, "never overwritten"), checked against memory and then by the database itself (the
document's primary key: ``INSERT ... ON CONFLICT DO NOTHING``, the transaction rolled back if a
result was there), so two processes finishing one workflow cannot both win.

When PostgreSQL cannot take the result (the connection is lost, the server restarts or refuses,
no pooled connection within `connection.POOL_WAIT_S`), `finish` does not raise: the result is
held in memory (`pending_writes`), served from there by `get`, `read_result` and
`pending_delivery`, counted in ``notifier_store_write_failures{error}``, logged, reported once
through ``on_storage_error``, and written again with exponential backoff
(``storage.write_retry_initial`` .. ``write_retry_max``) until it lands; `close` gives it a last
try and logs CRITICAL for what is still only in memory. A retry that finds a result already
stored under the id compares outcomes: the same is an earlier attempt that committed though its
acknowledgement was lost (landed, counted once, nothing written twice); another is a different
process's, which stands (logged as an ERROR).

Reads and idempotent writes (progress, steps, delivery) are tried once more on a fresh connection
when the connection failed (`connection.Database.run`); together with the pool's check of each
connection it hands out, a PostgreSQL restart is invisible to callers once the server is back.

Recorded steps
--------------
Rows of ``workflow_steps``, committed before `record_step` returns (PostgreSQL's commit is
durable with ``synchronous_commit`` on, its default). The value is the JSON `steps.encode_step`
makes, configured secrets masked, at most ``runner.max_step_bytes``. The same index under the same
name replaces the value; under another name it is a ValueError and the first stays (one
statement: ``ON CONFLICT ... DO UPDATE ... WHERE name = excluded.name``). Steps go with their
workflow (``ON DELETE CASCADE``).

Retention
---------
The same rules as `ResultStore.purge`: results that finished before the cutoff go, row, document
and steps together, in batches of one transaction each; running workflows never; results not yet
delivered only when an operator asks (``include_undelivered``). One process purges at a time (an
advisory lock): several bots on one database sweep in turn, and a sweep that finds another one
running skips. The clock check (`clock_check`) applies unchanged: the times in the rows come from
the processes' own clocks (the store's `clock`), not the server's, so a process whose clock jumped
must not purge on its word; its last sweep is a row of ``store_notes``. Sign 1 (a jump since this
host's last sweep) compares only sweeps of the same host (the boot id says which); sign 2 (a clock
past everything the database knows) holds for any host.

Reconciliation
--------------
Nothing to reconcile: `reconcile` returns an empty report. Every change is one transaction
(finish, purge), so no crash leaves half of one behind; there are no files to compare with rows.

Several processes
-----------------
Unlike `ResultStore`, no process holds the store exclusively (``exclusive`` is accepted and
ignored): PostgreSQL serialises what must be (results by primary key, migrations and purges by
advisory locks). `resumable` lists every running row that no workflow of this process runs;
with several processes on one database that includes other live processes' workflows, so in the
distributed mode the job queue (a dead worker's stalled jobs), not `resumable`, decides what to
resume.

Documents: bytea, measured against jsonb
----------------------------------------
A result is ``bytea`` holding exactly the bytes `document.encode_for_storage` produces, which a
result file would hold: every view (first delivery, hand-off, /retrieve_results, the CLI, the
fanout) renders the same document from either backend. jsonb cannot keep that promise: it
re-orders keys and rewrites numbers (a round trip of a stored document through ``::jsonb::text``
gave other bytes), and it refuses ``\\u0000`` (UntranslatableCharacter) and lone surrogates
(InvalidTextRepresentation), which results may hold and the files keep. Nor is it faster.
Measured on this machine (PostgreSQL 15 on 127.0.0.1, psycopg 3 with orjson as its JSON codec for
jsonb, one connection, 200 runs after 20 warm-ups, three runs of the script, two shared cores: the
p99s are noisy); a finish is the encoding plus the whole transaction (row upsert and document
insert), a read is the SELECT plus the document decoded into a dict:

==========  =========  ======================  ======================  ======================
document    stored as  finish p50 (ms)         finish p99 (ms)         read p50 / p99 (ms)
==========  =========  ======================  ======================  ======================
4.5 KB      bytea      0.70 - 0.97             1.3 - 3.9               0.21 - 0.26 / 0.4
4.5 KB      jsonb      0.85 - 0.99             1.3 - 4.0               0.22 - 0.27 / 0.4 - 1.2
100 KB      bytea      2.1 - 2.4               6.1 - 9.6               1.30 - 1.35 / 3.5 - 5.2
100 KB      jsonb      2.9 - 3.9               8.8 - 13.7              1.23 - 1.63 / 2.1 - 4.7
==========  =========  ======================  ======================  ======================

jsonb's finish is slower for large documents (PostgreSQL parses the JSON and builds its binary
form); reads come out even (bytea is decoded by orjson here, jsonb by psycopg with orjson).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from loguru import logger

from ...config import StorageSettings
from ...errors import NotifierError, StoreError
from ...metrics import STORE_WRITE_FAILURES, WORKFLOW_RESULTS_PERSISTED
from ...records import (
    DeliveryState,
    RecordedStep,
    StoredResult,
    WorkflowRecord,
    WorkflowStatus,
    validate_workflow_id,
)
from ...schema_migrations import check_current, migrate
from ..clock_check import (
    LAST_SWEEP_NOTE,
    HostTime,
    Uptime,
    clock_doubt,
    decode_sweep,
    encode_sweep,
    host_uptime,
)
from ..document import (
    FINISHED_STATUSES,
    DocumentError,
    decode_document,
    encode_for_storage,
    read_back,
    record_from_document,
    same_outcome,
)
from ..locks import KeyedLocks
from ..maintenance import ReconcileReport
from ..query import MAX_PAGE_SIZE, ResultQuery
from ..rules import (
    clamp_progress,
    copy_record,
    id_prefix,
    purge_cutoff,
    validate_purge,
    validate_step,
)
from ..sqlite.index import WorkflowExists
from ..steps import decode_step, encode_step
from ..threads import StoreThreads
from . import schema as _schema  # noqa: F401 - registers the store's migration set
from .connection import (
    POOL_MAX_SIZE,
    POOL_MIN_SIZE,
    POOL_WAIT_S,
    Connection,
    Database,
    DatabaseAddress,
    connect,
    error_name,
)
from .index import PostgresIndex, UnknownWorkflow

__all__ = ["DEFAULT_MAX_STEP_BYTES", "PostgresStore", "StorageErrorHook", "UserLimitReached"]

DEFAULT_MAX_STEP_BYTES: Final = 1024 * 1024  # runner.max_step_bytes's default
_SECONDS_PER_DAY: Final = 86_400.0
# Encoding and decoding documents and steps (GIL-bound: two cores) off the event loop; the
# database's own waiting happens on the loop (psycopg's async connections).
_WORK_THREADS: Final = 2

StorageErrorHook = Callable[[str, BaseException], Awaitable[None]]


@dataclass(slots=True, eq=False)
class _PendingWrite:
    """A finished result PostgreSQL has not taken yet: the only copy, so it is served from here."""

    record: WorkflowRecord
    data: bytes
    document: dict[str, Any]
    reason: str
    failures: int = 0


@dataclass(frozen=True, slots=True)
class _Existing:
    """An outcome already stored for an id: in memory (`pending` set) or in the database."""

    document: dict[str, Any]
    size_bytes: int
    pending: WorkflowRecord | None


class _StoredCorrupt(StoreError):
    """The document stored under an id does not decode: not a failure of the database (trying
    again cannot help), and not a result this store may overwrite."""


def _encode_step(value: object, limit_bytes: int) -> bytes:
    return encode_step(value, limit_bytes=limit_bytes)


def _decode_steps(rows: Iterable[tuple[int, str, bytes, float]]) -> list[RecordedStep]:
    return [RecordedStep(index, name, decode_step(value), at) for index, name, value, at in rows]


class UserLimitReached(NotifierError):
    """A user would have more workflows running than `limit` allows (`of_command`: the limit is
    one workflow's own ``max_per_user``). Not a StoreError: the database answered."""

    def __init__(self, limit: int, *, of_command: bool) -> None:
        super().__init__(f"user limit of {limit} running workflows reached")
        self.limit = limit
        self.of_command = of_command


# pg_advisory_xact_lock's first key for the per-user limit check ("user" in ASCII).
_USER_LIMIT_LOCK: Final = int.from_bytes(b"user", "big")


class PostgresStore:
    """Workflow results in PostgreSQL (see the module docstring). Open with
    ``await PostgresStore.open(settings)``; close with ``await store.close()`` (or ``async with``).
    Every method validates the workflow id before anything else."""

    def __init__(
        self,
        settings: StorageSettings,
        db: Database,
        *,
        threads: StoreThreads,
        on_storage_error: StorageErrorHook | None,
        clock: Callable[[], float],
        uptime: Uptime,
        max_step_bytes: int,
    ) -> None:
        self._settings = settings
        self._db = db
        self._index = PostgresIndex(db)
        self._threads = threads
        self._on_storage_error = on_storage_error
        self._clock = clock
        self._uptime = uptime
        self._max_step_bytes = max_step_bytes
        self._live: dict[str, WorkflowRecord] = {}
        self._pending: dict[str, _PendingWrite] = {}
        self._locks = KeyedLocks()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: StorageSettings,
        *,
        on_storage_error: StorageErrorHook | None = None,
        clock: Callable[[], float] = time.time,
        uptime: Uptime = host_uptime,
        maintain: bool = True,
        exclusive: bool | None = None,
        max_step_bytes: int = DEFAULT_MAX_STEP_BYTES,
        pool_min_size: int = POOL_MIN_SIZE,
        pool_max_size: int = POOL_MAX_SIZE,
        pool_wait_s: float = POOL_WAIT_S,
    ) -> PostgresStore:
        """Connect to ``storage.postgres_dsn``; then, if `maintain`, apply the schema migrations
        (`migrations.migrate`: every registered set, idempotent, under a lock), purge expired
        results and start the periodic retention task.

        Without `maintain` (the CLI beside a running bot) nothing is changed: a schema that is
        missing or older is a StoreError asking for ``notifier db migrate``; one newer than this
        program is refused in any case (SchemaNewer). `exclusive` is accepted for the same call
        as `ResultStore.open` and ignored: processes share this store by design (the module
        docstring says how they stay out of each other's way). `clock`, `uptime` and
        `max_step_bytes` are as for `ResultStore.open`; the pool holds `pool_min_size` ..
        `pool_max_size` connections, and a call waits at most `pool_wait_s` for one (then a
        finish keeps its result in memory, a read fails).
        """
        del exclusive  # no store lock here: see the docstring
        if settings.backend != "postgres" or settings.postgres_dsn is None:
            raise StoreError(
                "PostgresStore needs storage.backend: postgres and storage.postgres_dsn"
            )
        dsn = settings.postgres_dsn.get_secret_value()
        address = DatabaseAddress.parse(dsn)
        await cls._prepare_schema(dsn, address, maintain=maintain)
        db = await Database.open(
            dsn, address, min_size=pool_min_size, max_size=pool_max_size, wait_s=pool_wait_s
        )
        threads = StoreThreads(work_threads=_WORK_THREADS, maintenance_threads=1)
        store = cls(
            settings,
            db,
            threads=threads,
            on_storage_error=on_storage_error,
            clock=clock,
            uptime=uptime,
            max_step_bytes=max_step_bytes,
        )
        try:
            if maintain:
                await threads.maintenance(uptime)  # reads the boot id once, off the loop
                await store._sweep()
                store._spawn(store._retention_loop(), name="store-retention")
        except BaseException:
            await store.close()
            raise
        logger.info(
            "store: opened PostgreSQL {} (maintenance {})",
            address.where,
            "on" if maintain else "off",
        )
        return store

    @staticmethod
    async def _prepare_schema(dsn: str, address: DatabaseAddress, *, maintain: bool) -> None:
        conn = await connect(dsn, address)
        try:
            if maintain:
                changes = await migrate(conn)
                for name, before, after in changes:
                    if before != after:
                        logger.info(
                            "store: PostgreSQL {}: schema {} migrated from version {} to {}",
                            address.where,
                            name,
                            before,
                            after,
                        )
            else:
                await check_current(conn)
        except StoreError:
            raise
        except Exception as exc:  # psycopg's: a role without the right to create tables, ...
            what = "migrate the schema" if maintain else "read the schema version"
            raise StoreError(
                f"PostgreSQL {address.where}: cannot {what}: {address.describe(exc)}"
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        """Stop the retention task, give every pending write one last try, close the pool and
        stop the store's threads. A result whose write still fails here exists only in this
        process's memory; that is logged as CRITICAL with its id."""
        if self._closed:
            return
        self._closing.set()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._closed = True
        try:
            for workflow_id in self._pending:
                logger.critical(
                    "store: workflow {}: result never reached PostgreSQL and is lost with this "
                    "process",
                    workflow_id,
                )
            await self._index.close()
            await self._db.close()
        finally:
            self._threads.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pending_writes(self) -> tuple[str, ...]:
        """Ids of finished results held only in memory while their write is retried."""
        return tuple(self._pending)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the result store is closed")

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.debug("store: task {} ended with {!r}", task.get_name(), exc)

    # -- running workflows ---------------------------------------------------------------------

    async def create(
        self,
        record: WorkflowRecord,
        *,
        inside: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> None:
        """Insert a workflow as running, before it starts (the write-ahead's first half).

        The record is also kept in memory until `finish`, so that even if the database cannot
        take the row (StoreError here) a later `finish` still persists the result.

        `inside(conn)` runs in the insert's transaction (a gateway's token and job: the workflow
        is stored and queued, or neither). Whatever it raises rolls the row back and reaches
        the caller; nothing is kept in memory then (this process runs nothing to finish)."""
        workflow_id = validate_workflow_id(record.workflow_id)
        self._check_open()
        row = dataclasses.replace(
            record,
            workflow_id=workflow_id,
            options=dict(record.options),
            status=WorkflowStatus.RUNNING,
            created_at=record.created_at or self._clock(),
            finished_at=None,
            size_bytes=None,
            path=None,
            delivery_state=DeliveryState.PENDING,
            delivered_via=None,
            delivered_at=None,
        )
        if workflow_id in self._live or workflow_id in self._pending:
            raise WorkflowExists(f"workflow {workflow_id} already exists")
        if inside is not None:
            await self._index.insert(row, inside)
            return
        try:
            await self._index.insert(row)
        except WorkflowExists:
            raise
        except StoreError as exc:
            self._live[workflow_id] = row
            logger.error("store: workflow {}: not recorded as running: {}", workflow_id, exc)
            raise
        self._live[workflow_id] = row

    # -- the distributed mode's own questions (notifier.distributed) ---------------------------

    @property
    def database(self) -> Database:
        """The pool, for what must share a connection or a transaction with the store's rows
        (interaction tokens, the job queue)."""
        return self._db

    @staticmethod
    async def ask_user_limits(
        conn: Connection,
        user_id: int,
        *,
        command: str,
        max_per_user: int,
        max_per_user_of_command: int | None,
    ) -> Callable[[], Awaitable[None]]:
        """In the transaction that just inserted a workflow of `user_id`: send the question
        "how many does the user now run?" and return its verdict, an awaitable that raises
        UserLimitReached if more than allowed (all workflows, or this `command`'s).

        The transaction-level advisory lock on the user makes concurrent starts (two gateways,
        two shards) count one after the other: a row committed by one is seen by the next.
        The verdict is a separate step so that the caller, in pipeline mode (`insert`), can send
        its other statements (the token, the job) before reading the answer: one round trip
        for all of them instead of one each; a verdict that raises still rolls everything back,
        since nothing is committed before it is read."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [_USER_LIMIT_LOCK, user_id & 0x7FFFFFFF]
        )
        cursor = await conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE command = %s) FROM workflows "
            "WHERE user_id = %s AND status = 'running'",
            [command, user_id],
        )

        async def verdict() -> None:
            row = await cursor.fetchone()
            running, of_command = (int(row[0]), int(row[1])) if row else (0, 0)
            if running > max_per_user:
                raise UserLimitReached(max_per_user, of_command=False)
            if max_per_user_of_command is not None and of_command > max_per_user_of_command:
                raise UserLimitReached(max_per_user_of_command, of_command=True)

        return verdict

    async def claim(
        self, workflow_id: str, job_id: int, *, lease_s: float
    ) -> tuple[int, float] | None:
        """Make queue job `job_id` the one running the workflow, for `lease_s` seconds (renewed
        by `renew` while it runs); None once it is, else the job whose lease still runs and the
        seconds its lease has left.

        One runner at a time, whatever the queue does: a second job for the workflow (deferred
        again while its runner still ran), or its own job retried because its worker missed
        heartbeats while alive (a starved event loop), finds the lease live and runs nothing.
        A worker that died stops renewing: its lease ends before the stalled-job sweep retries
        the job (the lease is ``distributed.stall_timeout``), and the retried job claims it.
        Times are the database server's, so workers' clocks need not agree."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()

        async def claim(conn: Connection) -> tuple[int, float] | None:
            async with conn.transaction():
                cursor = await conn.execute(
                    "SELECT runner_job, runner_until - extract(epoch FROM clock_timestamp()) "
                    "FROM workflows WHERE workflow_id = %s FOR UPDATE",
                    [workflow_id],
                )
                row = await cursor.fetchone()
                if row is None:
                    raise StoreError(f"unknown workflow {workflow_id}: not claimed")
                holder, left = row
                if holder is not None and left is not None and left > 0:
                    return int(holder), float(left)
                await conn.execute(
                    "UPDATE workflows SET runner_job = %s, "
                    "runner_until = extract(epoch FROM clock_timestamp()) + %s "
                    "WHERE workflow_id = %s",
                    [job_id, lease_s, workflow_id],
                )
            return None

        return await self._db.run("claim a workflow for its job", claim, retry=True)

    async def renew(self, workflow_ids: Sequence[str], *, lease_s: float) -> None:
        """Extend the leases of the workflows this worker runs (see `claim`)."""
        self._check_open()
        await self._db.fetch(
            "renew runners' leases",
            "UPDATE workflows SET runner_until = extract(epoch FROM clock_timestamp()) + %s "
            "WHERE workflow_id = ANY(%s) RETURNING 1",
            [lease_s, list(workflow_ids)],
        )

    async def release(self, workflow_id: str, job_id: int) -> None:
        """Job `job_id` no longer runs the workflow (its worker hands it back): the next job
        for it may claim it at once, before this job has ended."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        await self._db.fetch(
            "release a workflow",
            "UPDATE workflows SET runner_job = NULL, runner_until = NULL "
            "WHERE workflow_id = %s AND runner_job = %s RETURNING 1",
            [workflow_id, job_id],
        )

    async def request_cancel(self, workflow_id: str) -> bool:
        """Mark a running workflow for its worker to stop; False if it is not running."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        rows = await self._db.fetch(
            "ask for a cancel",
            "UPDATE workflows SET cancel_requested = true "
            "WHERE workflow_id = %s AND status = 'running' RETURNING 1",
            [workflow_id],
        )
        return bool(rows)

    async def cancels_requested(self, workflow_ids: Sequence[str]) -> list[str]:
        """Which of `workflow_ids` (running here) a gateway asked to cancel."""
        self._check_open()
        rows = await self._db.fetch(
            "read cancel requests",
            "SELECT workflow_id FROM workflows "
            "WHERE workflow_id = ANY(%s) AND cancel_requested AND status = 'running'",
            [list(workflow_ids)],
        )
        return [str(row[0]) for row in rows]

    async def update_progress(self, workflow_id: str, *, stage: str, progress: float) -> None:
        """Record how far a running workflow got. Never raises for a database failure: progress
        is advisory and must not fail a workflow."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        fraction = clamp_progress(progress)
        if (live := self._live.get(workflow_id)) is not None:
            live.stage, live.progress = stage, fraction
        try:
            await self._index.update_progress(workflow_id, stage, fraction)
        except StoreError as exc:
            logger.warning("store: workflow {}: progress not recorded: {}", workflow_id, exc)

    # -- recorded steps (durable workflows) ----------------------------------------------------

    async def record_step(self, workflow_id: str, index: int, name: str, value: object) -> None:
        """Record that step `index` named `name` returned `value`; returns once committed.

        As `ResultStore.record_step`: StepNotStorable / StepTooLarge for a value the store does
        not take; the same index again replaces the value under the same name, under another
        name it is a ValueError and the recorded step stays; StoreError for a workflow the
        database holds no row for, or if the database cannot take it."""
        workflow_id = validate_workflow_id(workflow_id)
        validate_step(index, name)
        self._check_open()
        data = await self._threads.work(_encode_step, value, self._max_step_bytes)
        try:
            recorded = await self._index.record_step(workflow_id, index, name, data, self._clock())
        except UnknownWorkflow:
            raise StoreError(
                f"unknown workflow {workflow_id}: its step {name!r} is not recorded"
            ) from None
        if recorded is not None:
            raise ValueError(
                f"workflow {workflow_id}: step {index} was recorded as {recorded!r}, "
                f"not {name!r}; a recorded step is replaced only by the same step"
            )

    async def steps(self, workflow_id: str) -> list[RecordedStep]:
        """The workflow's recorded steps, by index; their values as JSON reads them back."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        rows = await self._index.steps(workflow_id)
        return await self._threads.work(_decode_steps, rows)

    def adopt(self, record: WorkflowRecord) -> None:
        """This process runs `record` from now on, though another created it (a worker took its
        job): kept in memory until `finish`, as `create` keeps its own, so that a result whose
        row cannot be read then (the database away) is still held and retried, not refused."""
        workflow_id = validate_workflow_id(record.workflow_id)
        if record.status is WorkflowStatus.RUNNING and workflow_id not in self._pending:
            self._live.setdefault(workflow_id, copy_record(record))

    async def note_resume(self, workflow_id: str) -> int:
        """Count one more resume of a workflow found running (committed before it returns) and
        return the new count; StoreError for a workflow the database does not hold. The workflow
        counts as this process's from then on (`resumable` no longer lists it)."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        count = await self._index.note_resume(workflow_id)
        if count is None:
            raise StoreError(f"unknown workflow {workflow_id}: no resume counted")
        live = self._live.get(workflow_id)
        row = None if live is not None else await self._index.get(workflow_id)
        if row is not None and row.status is WorkflowStatus.RUNNING:
            live = self._live[workflow_id] = row
        if live is not None:
            live.resumes = count
        return count

    async def resumable(self) -> list[WorkflowRecord]:
        """Workflows still marked running that no workflow of this process runs (nor holds the
        result of, waiting for the database), oldest first (see the module docstring for what
        that means with several processes)."""
        self._check_open()
        rows = await self._index.running()
        return [
            row
            for row in rows
            if row.workflow_id not in self._live and row.workflow_id not in self._pending
        ]

    # -- finishing (the write-ahead's second half) --------------------------------------------

    async def finish(
        self,
        workflow_id: str,
        *,
        status: WorkflowStatus,
        result: dict[str, Any] | None,
        error: str = "",
        reason: str = "completed",
    ) -> StoredResult:
        """Persist a workflow's outcome (row and document, one transaction); call before any
        delivery is tried. Returns the stored result as every later reader gets it.

        As `ResultStore.finish`: idempotent for the same outcome; StoreError for a different
        one, for an unknown workflow, or for a result that is not JSON-encodable. A database
        failure does not raise (see the module docstring). The write runs shielded, so a
        cancelled caller does not cancel it."""
        workflow_id = validate_workflow_id(workflow_id)
        if status not in FINISHED_STATUSES:
            raise ValueError(f"finish() takes a finished status, not {status!r}")
        self._check_open()
        task = self._spawn(
            self._finish(workflow_id, status, result, error, reason),
            name=f"store-finish-{workflow_id}",
        )
        stored: StoredResult = await asyncio.shield(task)
        return stored

    async def _finish(
        self,
        workflow_id: str,
        status: WorkflowStatus,
        result: dict[str, Any] | None,
        error: str,
        reason: str,
    ) -> StoredResult:
        failure: StoreError | None = None
        async with self._locks.hold(workflow_id):
            existing = self._pending_outcome(workflow_id)
            base = self._live.get(workflow_id)
            unreadable: StoreError | None = None
            if base is None:
                try:
                    base = await self._index.get(workflow_id)
                except StoreError as exc:
                    unreadable = exc
            if base is None and existing is None and unreadable is None:
                existing = await self._stored_outcome(workflow_id)
            if base is None and existing is not None:
                base = existing.pending or record_from_document(existing.document)
            if base is None:
                if unreadable is not None:
                    raise StoreError(
                        f"workflow {workflow_id}: its row cannot be read, so its result cannot "
                        f"be stored: {unreadable}"
                    ) from unreadable
                raise StoreError(f"unknown workflow {workflow_id}: it was never created")
            finished = dataclasses.replace(
                base,
                options=dict(base.options),
                status=status,
                error=error,
                finished_at=self._clock(),
                progress=1.0 if status is WorkflowStatus.COMPLETED else base.progress,
                path=None,
                size_bytes=None,
            )
            # Compared, and handed back, as a later read returns it: from the encoded bytes.
            data, document = await self._threads.work(encode_for_storage, finished, result)
            finished.size_bytes = len(data)
            # The database is asked only when its primary key finds a result under the id (the
            # write returns False): then the stored outcome decides, as if it had been read
            # first. Twice means a result keeps appearing and vanishing: not ours to decide.
            for _attempt in range(2):
                if existing is not None:
                    if same_outcome(existing.document, document):
                        record = await self._already_finished(workflow_id, existing)
                        return StoredResult(record, existing.document)
                    raise StoreError(
                        f"workflow {workflow_id} already has a different result; "
                        "a stored result is never overwritten"
                    )
                pending = _PendingWrite(finished, data, document, reason)
                live = self._live.pop(workflow_id, None)
                self._pending[workflow_id] = pending
                try:
                    written = await self._index.write_finished(finished, data, self._clock())
                    if not written:
                        existing = await self._stored_outcome(workflow_id)
                except _StoredCorrupt:
                    del self._pending[workflow_id]
                    if live is not None:
                        self._live[workflow_id] = live
                    raise
                except StoreError as exc:
                    failure = exc
                    self._write_failed(pending, exc)
                    break
                if written:
                    self._written(pending)
                    break
                del self._pending[workflow_id]
                if live is not None:
                    self._live[workflow_id] = live
            else:
                raise StoreError(
                    f"workflow {workflow_id}: a result keeps appearing under its id; not "
                    "overwritten"
                )
            record = copy_record(pending.record)
        if failure is not None:
            # Outside the lock: the hook may call back into the store for this workflow.
            await self._tell_storage_error(workflow_id, failure)
        return StoredResult(record, document)

    def _pending_outcome(self, workflow_id: str) -> _Existing | None:
        """The outcome this process holds in memory for the id (its write is being retried)."""
        if (pending := self._pending.get(workflow_id)) is None:
            return None
        return _Existing(pending.document, len(pending.data), pending.record)

    async def _stored_outcome(self, workflow_id: str) -> _Existing | None:
        """The outcome the database holds for the id, or None. A document that does not decode
        is a StoreError: without reading it the store cannot promise not to overwrite it."""
        data = await self._index.document(workflow_id)
        if data is None:
            return None
        try:
            document = await self._threads.work(decode_document, data, workflow_id)
        except DocumentError as exc:
            raise _StoredCorrupt(
                f"workflow {workflow_id}: the stored result is corrupt ({exc}); not overwritten"
            ) from exc
        return _Existing(document, len(data), None)

    async def _already_finished(self, workflow_id: str, existing: _Existing) -> WorkflowRecord:
        if existing.pending is not None:
            return copy_record(existing.pending)
        row = None
        with contextlib.suppress(StoreError):
            row = await self._index.get(workflow_id)
        if row is not None and row.status in FINISHED_STATUSES:
            return row
        # The database answered the document but not the row: the document carries the row.
        rebuilt = record_from_document(existing.document)
        rebuilt.size_bytes = existing.size_bytes
        return rebuilt

    def _written(self, pending: _PendingWrite, *, note: str = "") -> None:
        record = pending.record
        if self._pending.get(record.workflow_id) is pending:
            del self._pending[record.workflow_id]
        WORKFLOW_RESULTS_PERSISTED.labels(reason=pending.reason).inc()
        logger.info(
            "store: workflow {} {} result persisted ({} bytes{}{})",
            record.workflow_id,
            record.status.value,
            record.size_bytes,
            f", after {pending.failures} failed attempt(s)" if pending.failures else "",
            note,
        )

    def _write_failed(self, pending: _PendingWrite, exc: StoreError) -> None:
        workflow_id = pending.record.workflow_id
        pending.failures += 1
        name = error_name(exc)
        STORE_WRITE_FAILURES.labels(error=name).inc()
        logger.error(
            "store: workflow {}: result not stored ({}: {}); kept in memory, retrying",
            workflow_id,
            name,
            exc,
        )
        self._spawn(self._retry(pending), name=f"store-retry-{workflow_id}")

    async def _tell_storage_error(self, workflow_id: str, exc: StoreError) -> None:
        if self._on_storage_error is None:
            return
        try:
            await self._on_storage_error(workflow_id, exc)
        except Exception:  # noqa: BLE001 - the hook's bug must not undo the write-ahead
            logger.exception("store: workflow {}: on_storage_error hook failed", workflow_id)

    async def _retry(self, pending: _PendingWrite) -> None:
        """Write a held result again with exponential backoff until it lands or the store closes
        (closing triggers one last attempt at once)."""
        workflow_id = pending.record.workflow_id
        delay_s = self._settings.write_retry_initial
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=delay_s)
            async with self._locks.hold(workflow_id):
                if self._pending.get(workflow_id) is not pending:
                    return
                try:
                    if await self._index.write_finished(
                        pending.record, pending.data, self._clock()
                    ):
                        self._written(pending)
                        return
                    existing = await self._stored_outcome(workflow_id)
                except _StoredCorrupt as exc:
                    # Trying again cannot help: the result stays served from memory (and is
                    # logged as lost at close) for an operator to look at.
                    logger.error("store: {}; this result stays in memory only", exc)
                    return
                except StoreError as exc:
                    pending.failures += 1
                    name = error_name(exc)
                    STORE_WRITE_FAILURES.labels(error=name).inc()
                    if self._closing.is_set():
                        logger.critical(
                            "store: workflow {}: last write attempt at shutdown failed ({}: {})",
                            workflow_id,
                            name,
                            exc,
                        )
                        return
                    logger.warning(
                        "store: workflow {}: write attempt {} failed ({}); next in {:.1f}s",
                        workflow_id,
                        pending.failures,
                        name,
                        min(delay_s * 2, self._settings.write_retry_max),
                    )
                else:
                    if existing is not None:
                        await self._settle_stored(pending, existing)
                        return
            delay_s = min(delay_s * 2, self._settings.write_retry_max)

    async def _settle_stored(self, pending: _PendingWrite, existing: _Existing) -> None:
        """A retry found a result stored under the id: an earlier attempt of ours that committed
        (its acknowledgement lost with the connection), or another process's."""
        record = pending.record
        if not same_outcome(existing.document, pending.document):
            del self._pending[record.workflow_id]
            logger.error(
                "store: workflow {}: another process stored a different result while this one "
                "waited for the database; the stored result stands, this one is dropped",
                record.workflow_id,
            )
            return
        self._written(pending, note=", by an earlier attempt whose acknowledgement was lost")
        if record.delivery_state is not DeliveryState.PENDING:
            # Delivered while only memory held it: the committed attempt did not carry that.
            try:
                await self._index.set_delivery(
                    record.workflow_id,
                    record.delivery_state,
                    record.delivered_via or "",
                    record.delivered_at or self._clock(),
                )
            except StoreError as exc:
                logger.error(
                    "store: workflow {}: delivery state not recorded: {}", record.workflow_id, exc
                )

    # -- delivery bookkeeping ------------------------------------------------------------------

    async def mark_delivered(self, workflow_id: str, via: str) -> None:
        """Record that the user got the result, and how (the ladder's rung)."""
        await self._set_delivery(workflow_id, DeliveryState.DELIVERED, via)

    async def mark_undeliverable(self, workflow_id: str, reason: str) -> None:
        """Record that every way to deliver failed (the reason in `delivered_via`); the result
        stays retrievable (and, from then on, subject to retention)."""
        logger.warning("store: workflow {}: undeliverable: {}", workflow_id, reason)
        await self._set_delivery(workflow_id, DeliveryState.UNDELIVERABLE, reason)

    async def _set_delivery(self, workflow_id: str, state: DeliveryState, via: str) -> None:
        """The row (and the result held in memory, whose retried write carries it). A database
        failure is logged, not raised: it costs at most a second delivery, never a result."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        at = self._clock()
        async with self._locks.hold(workflow_id):
            pending = self._pending.get(workflow_id)
            if pending is not None:
                pending.record.delivery_state = state
                pending.record.delivered_via = via
                pending.record.delivered_at = at
            try:
                found = await self._index.set_delivery(workflow_id, state, via, at)
            except StoreError as exc:
                logger.error(
                    "store: workflow {}: delivery state not recorded: {}", workflow_id, exc
                )
                found = True  # the database cannot say
            if not found and pending is None:
                raise StoreError(f"unknown workflow {workflow_id}")

    # -- reading -------------------------------------------------------------------------------

    async def get(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow's record, or None if the database never heard of it."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        if (pending := self._pending.get(workflow_id)) is not None:
            return copy_record(pending.record)
        live = self._live.get(workflow_id)
        try:
            row = await self._index.get(workflow_id)
        except StoreError:
            if live is None:
                raise
            row = None
        if row is None and live is not None:
            return copy_record(live)
        return row

    async def read_result(self, workflow_id: str) -> dict[str, Any]:
        """The stored document (served from memory while its write is pending). StoreError if
        there is no result (unknown, still running, lost), or it cannot be read (which)."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        if (pending := self._pending.get(workflow_id)) is not None:
            held: dict[str, Any] = await self._threads.work(read_back, pending.data)
            return held
        data = await self._index.document(workflow_id)
        if data is None:
            record = await self.get(workflow_id)
            if record is None:
                raise StoreError(f"no workflow {workflow_id}")
            raise StoreError(
                f"workflow {workflow_id} has no stored result (status {record.status.value})"
            )
        try:
            document: dict[str, Any] = await self._threads.work(decode_document, data, workflow_id)
        except DocumentError as exc:
            logger.error("store: workflow {}: stored result is corrupt: {}", workflow_id, exc)
            raise StoreError(f"workflow {workflow_id}: stored result is corrupt: {exc}") from exc
        return document

    async def search(self, query: ResultQuery) -> list[WorkflowRecord]:
        """Rows matching `query`, newest first, one page (`limit`, `offset`)."""
        self._check_open()
        return await self._index.search(query)

    def search_where(self, query: ResultQuery) -> tuple[str, list[Any]]:
        """The WHERE clause and parameters `search(query)` runs now (for EXPLAIN in tools and
        benchmarks: which way a URL needle takes depends on the trigram counts read)."""
        return self._index.where(query)

    async def url_search_ready(self) -> None:
        """Refresh the planner's statistics (``ANALYZE workflows``) and read the URL trigram
        counts (`url_terms`) now, for tools and benchmarks that just loaded many rows; without
        this, the first URL search reads them in the background."""
        self._check_open()
        await self._index.analyze()
        await self._index.read_url_counts()

    async def count(self, query: ResultQuery) -> int:
        """How many rows match `query` in all (its `limit` and `offset` are ignored)."""
        self._check_open()
        return await self._index.count(query)

    async def recent_ids(
        self, user_id: int, prefix: str = "", limit: int = 25
    ) -> list[WorkflowRecord]:
        """A user's workflows whose id starts with `prefix`, newest first (autocomplete); a
        prefix no id could start with gives an empty list."""
        self._check_open()
        cleaned = id_prefix(prefix)
        if cleaned is None:
            return []
        return await self._index.recent(user_id, cleaned, max(1, min(limit, MAX_PAGE_SIZE)))

    async def pending_delivery(self) -> list[WorkflowRecord]:
        """Finished results with a document that no user has received yet, oldest first."""
        self._check_open()
        rows = await self._index.pending_delivery()
        seen = {row.workflow_id for row in rows}
        extra = [
            copy_record(p.record)
            for wid, p in self._pending.items()
            if wid not in seen and p.record.delivery_state is DeliveryState.PENDING
        ]
        return sorted(rows + extra, key=lambda r: r.finished_at or 0.0)

    async def running(self) -> list[WorkflowRecord]:
        """Rows still marked running (and this process's running workflows the database missed)."""
        self._check_open()
        rows = await self._index.running()
        seen = {row.workflow_id for row in rows}
        extra = [copy_record(r) for wid, r in self._live.items() if wid not in seen]
        return sorted(rows + extra, key=lambda r: r.created_at)

    async def durations(self, command: str, depth: str, limit: int) -> list[float]:
        """Durations in seconds of the latest completed runs of `command` at `depth`, newest
        first (the runner's estimate for a new run)."""
        self._check_open()
        return await self._index.durations(command, depth, max(0, limit))

    async def insert_many(self, records: Iterable[WorkflowRecord]) -> None:
        """Add rows as they are (imports from another store, tests), with one COPY."""
        self._check_open()
        await self._index.insert_many(records)

    # -- maintenance ---------------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport:
        """Nothing to reconcile, so an empty report: every change here is one transaction (a
        finish writes row and document together, a purge deletes them together), so no crash
        leaves half of one behind, and there are no files to compare with the rows."""
        self._check_open()
        return ReconcileReport()

    async def purge(
        self,
        *,
        older_than_s: float | None = None,
        before: float | None = None,
        include_undelivered: bool = False,
        dry_run: bool = False,
    ) -> int:
        """Delete finished results (row, document and steps) that finished before the cutoff;
        return how many (or, with `dry_run`, how many would go). As `ResultStore.purge`: done as
        told whatever the clock says, recorded as a sweep (unless a dry run); the cutoff is
        `before`, or now minus `older_than_s`, or now minus ``retention_days``; running
        workflows never go, undelivered results only with `include_undelivered`. Waits for a
        purge another process is running."""
        validate_purge(older_than_s=older_than_s, before=before)
        self._check_open()
        now = await self._host_time()
        cutoff = purge_cutoff(
            now_s=now.wall_s,
            retention_s=self._retention_s,
            older_than_s=older_than_s,
            before=before,
        )
        purged = await self._purge(
            cutoff, include_undelivered=include_undelivered, dry_run=dry_run, wait=True
        )
        if not dry_run:
            await self._record_sweep(now)
        return purged or 0

    async def _purge(
        self, cutoff: float, *, include_undelivered: bool, dry_run: bool, wait: bool
    ) -> int | None:
        """None if another process is purging and not `wait`."""
        exclude = sorted(set(self._pending) | self._locks.busy())
        if dry_run:
            return await self._index.count_expired(
                cutoff, include_undelivered=include_undelivered, exclude=exclude
            )
        purged = await self._index.purge(
            cutoff, include_undelivered=include_undelivered, exclude=exclude, wait=wait
        )
        if purged is None:
            logger.info("store: another process is purging expired results; this sweep skipped")
            return None
        if not include_undelivered:
            kept = await self._index.count_expired(
                cutoff, include_undelivered=True, exclude=exclude
            )
            if kept:
                logger.warning(
                    "store: retention kept {} expired result(s) that were never delivered", kept
                )
        if purged:
            logger.info("store: retention purged {} result(s) finished before {}", purged, cutoff)
        return purged

    @property
    def _retention_s(self) -> float:
        return self._settings.retention_days * _SECONDS_PER_DAY

    async def _host_time(self) -> HostTime:
        boot_id, uptime_s = await self._threads.maintenance(self._uptime)
        return HostTime(self._clock(), boot_id, uptime_s)

    async def _record_sweep(self, now: HostTime) -> None:
        try:
            await self._index.set_note(LAST_SWEEP_NOTE, encode_sweep(now))
        except StoreError as exc:
            logger.warning("store: retention's sweep time not recorded: {}", exc)

    async def _sweep(self) -> int:
        """Retention's own pass (at open and every ``retention_interval``): `purge` with the
        default cutoff, unless the clock is not believable (`clock_check`): then nothing is
        purged and a WARNING says why if anything would have gone."""
        self._check_open()
        now = await self._host_time()
        last = decode_sweep(await self._index.get_note(LAST_SWEEP_NOTE))
        doubt = clock_doubt(
            now,
            last,
            await self._index.newest_activity(),
            retention_s=self._retention_s,
            interval_s=self._settings.retention_interval,
        )
        cutoff = now.wall_s - self._retention_s
        if doubt is None:
            purged = await self._purge(cutoff, include_undelivered=False, dry_run=False, wait=False)
            if purged is None:
                return 0  # the other process records its own sweep
            await self._record_sweep(now)
            return purged
        would = await self._purge(cutoff, include_undelivered=False, dry_run=True, wait=False)
        if would:
            logger.warning(
                "store: retention purged nothing ({} result(s) would have gone): {}. It purges "
                "again once the clock is believable, or after an operator's `python -m notifier "
                "results purge --older-than {}d`, which makes this clock the reference",
                would,
                doubt,
                f"{self._settings.retention_days:g}",
            )
        else:
            logger.info("store: retention found nothing to purge; note: {}", doubt)
        return 0

    async def _retention_loop(self) -> None:
        interval_s = self._settings.retention_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=interval_s)
            if self._closing.is_set():
                return
            try:
                await self._sweep()
            except Exception:  # noqa: BLE001 - logged; one bad pass must not end retention
                logger.exception("store: periodic retention failed; trying again next interval")
