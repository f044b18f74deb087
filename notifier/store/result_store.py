"""`ResultStore`: the write-ahead result store. Its theory of operation is in `notifier.store`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from loguru import logger

from ..config import StorageSettings
from ..errors import StoreError
from ..groupcommit.damaged import quarantine_database
from ..metrics import STORE_WRITE_FAILURES, WORKFLOW_RESULTS_PERSISTED
from ..records import (
    DeliveryState,
    RecordedStep,
    StoredResult,
    WorkflowRecord,
    WorkflowStatus,
    validate_workflow_id,
)
from . import files
from .clock_check import (
    LAST_SWEEP_NOTE,
    HostTime,
    Uptime,
    clock_doubt,
    decode_sweep,
    encode_sweep,
    host_uptime,
)
from .delivery_mark import DeliveryMark, encode_mark
from .document import (
    FINISHED_STATUSES,
    DocumentError,
    decode_document,
    encode_for_storage,
    read_back,
    record_from_document,
    same_outcome,
)
from .file_writer import ResultFileWriter
from .locks import KeyedLocks
from .maintenance import Maintenance, ReconcileReport
from .query import MAX_PAGE_SIZE, ResultQuery
from .rules import (
    clamp_progress,
    copy_record,
    id_prefix,
    purge_cutoff,
    validate_purge,
    validate_step,
)
from .sqlite.index import IndexDamaged, ResultIndex, WorkflowExists
from .step_log import STEPS_DIR, Frame, StepLog
from .store_lock import StoreLock
from .threads import StoreThreads

__all__ = ["DEFAULT_MAX_STEP_BYTES", "INDEX_NAME", "ResultStore", "StorageErrorHook"]

INDEX_NAME: Final = "index.sqlite3"
DEFAULT_MAX_STEP_BYTES: Final = 1024 * 1024  # runner.max_step_bytes's default

_SECONDS_PER_DAY: Final = 86_400.0

StorageErrorHook = Callable[[str, BaseException], Awaitable[None]]


@dataclass(slots=True, eq=False)
class _PendingWrite:
    """A finished result the disk has not taken yet: the only copy, so it is served from here."""

    record: WorkflowRecord
    data: bytes
    reason: str
    failures: int = 0


@dataclass(frozen=True, slots=True)
class _Existing:
    """An outcome already stored for an id: in memory (`pending` set) or on disk."""

    document: dict[str, Any]
    size_bytes: int
    pending: WorkflowRecord | None


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _read_document(path: Path, workflow_id: str) -> tuple[int, dict[str, Any]]:
    """Read and check a stored result in one trip to a thread: (its size, the document).
    OSError if it cannot be read, DocumentError if it is not a document this store wrote."""
    data = files.read_bytes(path)
    return len(data), decode_document(data, workflow_id)


class ResultStore:
    """Workflow results on the local disk, one JSON file each, with an SQLite index beside them.

    Open with `await ResultStore.open(settings)`; close with `await store.close()` (or use
    ``async with``). Every method validates the workflow id before anything else.
    """

    def __init__(
        self,
        settings: StorageSettings,
        index: ResultIndex,
        *,
        threads: StoreThreads,
        lock: StoreLock | None,
        on_storage_error: StorageErrorHook | None,
        clock: Callable[[], float],
        uptime: Uptime,
        max_step_bytes: int = DEFAULT_MAX_STEP_BYTES,
    ) -> None:
        self._settings = settings
        self._max_step_bytes = max_step_bytes
        self._results_dir = settings.path / files.RESULTS_DIR
        self._files = ResultFileWriter(self._results_dir)
        self._index = index
        self._steps = StepLog(settings.path / STEPS_DIR, max_step_bytes=max_step_bytes)
        self._threads = threads
        self._lock = lock
        self._on_storage_error = on_storage_error
        self._clock = clock
        self._uptime = uptime
        self._live: dict[str, WorkflowRecord] = {}
        self._pending: dict[str, _PendingWrite] = {}
        self._locks = KeyedLocks()
        self._maintenance = Maintenance(
            index=index,
            root=settings.path,
            locks=self._locks,
            in_flight=self._pending,
            threads=threads,
            steps=self._steps,
        )
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
    ) -> ResultStore:
        """Prepare the directories, take the store's lock, open the index, then (if `maintain`)
        reconcile, purge expired results and start the periodic retention task.

        `exclusive` (default: `maintain`) takes the lock on ``storage.path`` (`store_lock`) for
        as long as the store is open; StoreLocked if another process holds it. A store that
        maintains itself always holds it: two processes maintaining one store lose results.

        Pass ``maintain=False`` from tools that open the store beside a running bot (the CLI):
        reconciling there would treat the bot's in-flight writes as crash debris, and opening a
        store to list it must not delete anything. Reads and an explicit `purge` still work (a
        purge should be made ``exclusive``). A damaged index is moved to quarantine/ and rebuilt
        from the result files only by a store that maintains itself; others get StoreError.

        `clock` is the wall clock (epoch seconds) and `uptime` the host's boot id and uptime
        clock, which retention compares with it (`clock_check`); tests pass their own.
        `max_step_bytes` is ``runner.max_step_bytes``: the largest step value `record_step` takes.
        """
        exclusive = maintain if exclusive is None else exclusive
        if maintain and not exclusive:
            raise ValueError("a store that maintains itself must hold its lock (exclusive)")
        root = settings.path
        threads = StoreThreads()
        lock: StoreLock | None = None
        index: ResultIndex | None = None
        try:
            try:
                for directory in (
                    root,
                    root / files.RESULTS_DIR,
                    root / files.QUARANTINE_DIR,
                    root / STEPS_DIR,
                ):
                    await threads.maintenance(files.ensure_private_dir, directory)
            except OSError as exc:
                raise StoreError(f"cannot prepare the store at {root}: {exc.strerror}") from exc
            if exclusive:
                lock = await threads.maintenance(StoreLock.acquire, root)
            if maintain:
                await threads.maintenance(uptime)  # reads the boot id once, off the loop
            index = await cls._open_index(root, threads, repair=maintain)
        except BaseException:
            if index is not None:
                await index.close()
            if lock is not None:
                await threads.maintenance(lock.release)
            threads.close()
            raise
        store = cls(
            settings,
            index,
            threads=threads,
            lock=lock,
            on_storage_error=on_storage_error,
            clock=clock,
            uptime=uptime,
            max_step_bytes=max_step_bytes,
        )
        try:
            await store._tighten_index_files()
            if exclusive:
                await store._bring_steps_from_the_index()
            if maintain:
                report = await store.reconcile()
                if not report.clean:
                    logger.warning("store: reconciliation at start-up: {}", report)
                await store._sweep()
                store._spawn(store._retention_loop(), name="store-retention")
        except BaseException:
            await store.close()
            raise
        logger.info("store: opened {} (maintenance {})", root, "on" if maintain else "off")
        return store

    @staticmethod
    async def _open_index(root: Path, threads: StoreThreads, *, repair: bool) -> ResultIndex:
        """The index, checked page by page when `repair`; a damaged one is moved to quarantine/
        and an empty one opened in its place (reconciliation then re-indexes every result file,
        delivery marks included). Without `repair`, a damaged index is the caller's error."""
        path = root / INDEX_NAME
        try:
            await threads.maintenance(files.ensure_private_file, path)
        except OSError as exc:
            raise StoreError(f"cannot prepare the index {path}: {exc.strerror}") from exc
        try:
            return await ResultIndex.open(path, threads=threads, check=repair)
        except IndexDamaged as exc:
            if not repair:
                raise StoreError(
                    f"{exc}; start the bot: it moves the file to quarantine/ and rebuilds the "
                    "index from the result files"
                ) from exc
            damage = str(exc)
        try:
            moved = await threads.maintenance(
                quarantine_database, path, root / files.QUARANTINE_DIR
            )
            await threads.maintenance(files.ensure_private_file, path)
        except OSError as exc:
            raise StoreError(f"{damage}; and it cannot be moved aside: {exc.strerror}") from exc
        logger.error(
            "store: {}; moved to {} and rebuilt from the result files (delivery state from "
            "their marks; workflows that were running are not in it)",
            damage,
            moved,
        )
        return await ResultIndex.open(path, threads=threads)

    async def _bring_steps_from_the_index(self) -> None:
        """Move steps that an index of schema version 4 held as rows into step files, then drop
        its table (steps are files since version 5: `step_log`). Idempotent: a crash half-way
        leaves the table, and the next open writes the same files again."""
        legacy = await self._index.legacy_steps()
        if legacy is None:
            return
        by_workflow: dict[str, list[Frame]] = {}
        for workflow_id, frame in legacy:
            by_workflow.setdefault(workflow_id, []).append(frame)
        try:
            for workflow_id, frames in by_workflow.items():
                await self._steps.bring(workflow_id, frames)
        except OSError as exc:
            raise StoreError(f"cannot move recorded steps into step files: {exc.strerror}") from exc
        await self._index.drop_legacy_steps()
        if by_workflow:
            logger.info(
                "store: moved {} recorded step(s) of {} workflow(s) from the index into {}/",
                len(legacy),
                len(by_workflow),
                STEPS_DIR,
            )

    async def _tighten_index_files(self) -> None:
        names = (INDEX_NAME, f"{INDEX_NAME}-wal", f"{INDEX_NAME}-shm")
        paths = [self._settings.path / name for name in names]
        try:
            await self._threads.maintenance(files.make_private, paths)
        except OSError as exc:
            raise StoreError(f"cannot make the index private: {exc.strerror}") from exc

    async def close(self) -> None:
        """Stop the retention task, give every pending write one last try, close the index,
        release the store's lock and stop the store's threads.

        A result whose write still fails here exists only in this process's memory; that is
        logged as CRITICAL with its id, because it is lost when the process exits.
        """
        if self._closed:
            return
        self._closing.set()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._closed = True
        try:
            await self._files.close()
            await self._steps.close()
            for workflow_id in self._pending:
                logger.critical(
                    "store: workflow {}: result never reached the disk and is lost with this "
                    "process",
                    workflow_id,
                )
            await self._index.close()
        finally:
            try:
                if self._lock is not None:
                    await self._threads.maintenance(self._lock.release)
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
            # The awaiting caller (if still there) gets the exception too; this covers a caller
            # that was cancelled while its finish() went on under the shield.
            logger.debug("store: task {} ended with {!r}", task.get_name(), exc)

    def _result_path(self, workflow_id: str) -> Path:
        return self._results_dir / files.result_name(workflow_id)

    # -- running workflows ---------------------------------------------------------------------

    async def create(self, record: WorkflowRecord) -> None:
        """Index a workflow as running, before it starts (the write-ahead's first half).

        The record is also kept in memory until `finish`, so that even if the index cannot be
        written (StoreError here) a later `finish` still persists the result.
        """
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
        try:
            await self._index.insert(row)
        except WorkflowExists:
            raise
        except StoreError as exc:
            self._live[workflow_id] = row
            logger.error("store: workflow {}: not indexed as running: {}", workflow_id, exc)
            raise
        self._live[workflow_id] = row

    async def update_progress(self, workflow_id: str, *, stage: str, progress: float) -> None:
        """Record how far a running workflow got (shown if the bot restarts mid-way).

        Never raises for an index failure: progress is advisory and must not fail a workflow.
        """
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
        """Record that step `index` (0-based, in the order the workflow ran them) named `name`
        returned `value`; returns once the row is fsynced (the index's group commit), so a
        workflow that goes on after this never runs the step again on a resume.

        The value is stored as JSON with configured secrets masked (`steps`): StepNotStorable if
        it is not JSON, StepTooLarge (naming ``runner.max_step_bytes``) if it is larger. The same
        index recorded again replaces the value under the same name (a replay after the process
        died between the write and the workflow's going on); under another name it is a
        ValueError and the recorded step stays. StoreError if the index cannot write it, or for a
        workflow this store does not know (steps never outlive their workflow: retention removes
        them with its row, and a step without one would never go).
        """
        workflow_id = validate_workflow_id(workflow_id)
        validate_step(index, name)
        self._check_open()
        if workflow_id not in self._live and await self._index.get(workflow_id) is None:
            raise StoreError(f"unknown workflow {workflow_id}: its step {name!r} is not recorded")
        try:
            recorded = await self._steps.record(workflow_id, index, name, value, self._clock())
        except OSError as exc:
            raise StoreError(
                f"cannot record step {name!r} of workflow {workflow_id}: {exc.strerror}"
            ) from exc
        if recorded is not None:
            raise ValueError(
                f"workflow {workflow_id}: step {index} was recorded as {recorded!r}, "
                f"not {name!r}; a recorded step is replaced only by the same step"
            )

    async def steps(self, workflow_id: str) -> list[RecordedStep]:
        """The workflow's recorded steps, by index; their values as JSON reads them back."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        try:
            return await self._steps.read(workflow_id)
        except OSError as exc:
            raise StoreError(
                f"cannot read the steps of workflow {workflow_id}: {exc.strerror}"
            ) from exc

    def adopt(self, record: WorkflowRecord) -> None:
        """This process runs `record` from now on, though another created it (a worker took its
        job): kept in memory until `finish`, as `create` keeps its own, so that a result whose
        row cannot be read then (the database away) is still held and retried, not refused."""
        workflow_id = validate_workflow_id(record.workflow_id)
        if record.status is WorkflowStatus.RUNNING and workflow_id not in self._pending:
            self._live.setdefault(workflow_id, copy_record(record))

    async def note_resume(self, workflow_id: str) -> int:
        """Count one more resume of a workflow found running (fsynced before it returns, so a
        resume that kills the process again is counted) and return the new count. StoreError for
        a workflow the index does not hold. The workflow counts as this process's from then on
        (`resumable` no longer lists it)."""
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        count = await self._index.note_resume(workflow_id)
        if count is None:
            raise StoreError(f"unknown workflow {workflow_id}: no resume counted")
        live = self._live.get(workflow_id)
        row = None if live is not None else await self._index.get(workflow_id)
        if row is not None and row.status is WorkflowStatus.RUNNING:
            # From now on this process runs it: `resumable` leaves it out, `finish` starts here.
            live = self._live[workflow_id] = row
        if live is not None:
            live.resumes = count
        return count

    async def resumable(self) -> list[WorkflowRecord]:
        """Workflows still marked running that no workflow of this process is running: those a
        dead process left behind, oldest first, each with its resume count. Whether one is
        resumed (its command, its recorded steps, `runner.max_resumes`) is the runner's call."""
        self._check_open()
        rows = await self._index.running()
        # Nor one whose result this process holds, waiting for the disk (its row may still say
        # running if the index refused the finish too): it finished, it is not to run again.
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
        """Persist a workflow's outcome; call before any delivery is tried. Returns the stored
        result: the record and the document as every later reader gets it (render that, not the
        dict the workflow returned: NaN is null once stored, a set a list).

        Also the way to mark a workflow interrupted (``status=INTERRUPTED``; the last stage and
        progress are kept). Idempotent for the same outcome; StoreError for a different one, for
        an unknown workflow, or for a result that is not JSON-encodable. A disk error does not
        raise: the result is served from memory, retried in the background, counted, logged and
        reported through `on_storage_error` (see `pending_writes`). The write runs shielded, so a
        cancelled caller does not cancel it.
        """
        workflow_id = validate_workflow_id(workflow_id)
        if status not in FINISHED_STATUSES:
            raise ValueError(f"finish() takes a finished status, not {status!r}")
        self._check_open()
        task = self._spawn(
            self._finish(workflow_id, status, result, error, reason),
            name=f"store-finish-{workflow_id}",
        )
        stored: StoredResult = await asyncio.shield(task)
        await self._steps.forget(workflow_id)  # its file stays until retention; closed here
        return stored

    async def _finish(
        self,
        workflow_id: str,
        status: WorkflowStatus,
        result: dict[str, Any] | None,
        error: str,
        reason: str,
    ) -> StoredResult:
        failure: OSError | None = None
        async with self._locks.hold(workflow_id):
            existing = await self._pending_outcome(workflow_id)
            base = self._live.get(workflow_id)
            if base is None:
                with contextlib.suppress(StoreError):
                    base = await self._index.get(workflow_id)
            if base is None and existing is None:
                existing = await self._stored_outcome(workflow_id)
            if base is None and existing is not None:
                base = existing.pending or record_from_document(existing.document)
            if base is None:
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
            # Outcomes are compared, and handed back, as a later read of the file returns them
            # (tuples become lists, NaN null, unknown types text): from the encoded bytes.
            data, document = await self._threads.work(encode_for_storage, finished, result)
            # The disk is asked only when the writer finds a file under the id (FileExistsError):
            # then the stored outcome decides, as if it had been read first. A corrupt file is
            # quarantined by _stored_outcome and the write goes ahead; twice means a file keeps
            # coming back under the id, which is not ours to overwrite.
            for _attempt in range(2):
                if existing is not None:
                    if same_outcome(existing.document, document):
                        record = await self._already_finished(workflow_id, existing)
                        return StoredResult(record, existing.document)
                    raise StoreError(
                        f"workflow {workflow_id} already has a different result; "
                        "a stored result is never overwritten"
                    )
                pending = _PendingWrite(finished, data, reason)
                live = self._live.pop(workflow_id, None)
                self._pending[workflow_id] = pending
                try:
                    await self._files.write(workflow_id, data)
                except FileExistsError:
                    del self._pending[workflow_id]
                    if live is not None:
                        self._live[workflow_id] = live
                    existing = await self._stored_outcome(workflow_id)
                    continue
                except OSError as exc:
                    failure = exc
                    await self._write_failed(pending, exc)
                else:
                    await self._written(pending)
                break
            else:
                raise StoreError(
                    f"workflow {workflow_id}: a file keeps appearing under its name; not overwritten"
                )
            record = copy_record(pending.record)
        if failure is not None:
            # Outside the lock: the hook may call back into the store for this workflow.
            await self._tell_storage_error(workflow_id, failure)
        return StoredResult(record, document)

    async def _pending_outcome(self, workflow_id: str) -> _Existing | None:
        """The outcome this process holds in memory for the id (its write is being retried)."""
        if (pending := self._pending.get(workflow_id)) is None:
            return None
        document: dict[str, Any] = await self._threads.work(read_back, pending.data)
        return _Existing(document, len(pending.data), pending.record)

    async def _stored_outcome(self, workflow_id: str) -> _Existing | None:
        """The outcome stored on disk for the id, or None.

        A corrupt file under the id is quarantined (kept, not overwritten) and counts as none.
        """
        path = self._result_path(workflow_id)
        try:
            size_bytes, document = await self._threads.work(_read_document, path, workflow_id)
        except FileNotFoundError:
            return None
        except DocumentError as exc:
            await self._maintenance.quarantine(path, str(exc))
            return None
        except OSError as exc:
            # Without reading it we cannot promise not to overwrite it: refuse.
            raise StoreError(
                f"workflow {workflow_id}: cannot read the stored result: {exc.strerror}"
            ) from exc
        return _Existing(document, size_bytes, None)

    async def _already_finished(self, workflow_id: str, existing: _Existing) -> WorkflowRecord:
        if existing.pending is not None:
            return copy_record(existing.pending)
        row = None
        with contextlib.suppress(StoreError):
            row = await self._index.get(workflow_id)
        if row is not None and row.path is not None and row.status in FINISHED_STATUSES:
            return row
        # The file is there but the index missed it (an earlier index failure): repair now.
        repaired = record_from_document(existing.document)
        repaired.path = files.relative_path(workflow_id)
        repaired.size_bytes = existing.size_bytes
        if row is not None:
            repaired.delivery_state = row.delivery_state
            repaired.delivered_via = row.delivered_via
            repaired.delivered_at = row.delivered_at
        try:
            await self._index.upsert_finished(repaired)
        except StoreError as exc:
            logger.error("store: workflow {}: index not repaired: {}", workflow_id, exc)
        return repaired

    async def _written(self, pending: _PendingWrite) -> None:
        record = pending.record
        record.path = files.relative_path(record.workflow_id)
        record.size_bytes = len(pending.data)
        try:
            await self._index.record_finished(record)
        except StoreError as exc:
            # The file is the truth; reconciliation re-indexes it at the next start.
            STORE_WRITE_FAILURES.labels(error="index").inc()
            logger.error(
                "store: workflow {}: result on disk but not indexed: {}", record.workflow_id, exc
            )
        if self._pending.get(record.workflow_id) is pending:
            del self._pending[record.workflow_id]
        WORKFLOW_RESULTS_PERSISTED.labels(reason=pending.reason).inc()
        logger.info(
            "store: workflow {} {} result persisted ({} bytes{})",
            record.workflow_id,
            record.status.value,
            record.size_bytes,
            f", after {pending.failures} failed attempt(s)" if pending.failures else "",
        )

    async def _write_failed(self, pending: _PendingWrite, exc: OSError) -> None:
        workflow_id = pending.record.workflow_id
        pending.failures += 1
        name = _errno_name(exc)
        STORE_WRITE_FAILURES.labels(error=name).inc()
        logger.error(
            "store: workflow {}: result not written ({}: {}); kept in memory, retrying",
            workflow_id,
            name,
            exc.strerror or exc,
        )
        try:  # so get(), search() and pending_delivery() show it finished meanwhile
            await self._index.record_finished(pending.record)
        except StoreError as index_exc:
            logger.error("store: workflow {}: not indexed either: {}", workflow_id, index_exc)
        self._spawn(self._retry(pending), name=f"store-retry-{workflow_id}")

    async def _tell_storage_error(self, workflow_id: str, exc: OSError) -> None:
        if self._on_storage_error is None:
            return
        try:
            await self._on_storage_error(workflow_id, exc)
        except Exception:  # noqa: BLE001 - the hook's bug must not undo the write-ahead
            logger.exception("store: workflow {}: on_storage_error hook failed", workflow_id)

    async def _retry(self, pending: _PendingWrite) -> None:
        """Retry a failed write with exponential backoff until it lands or the store closes
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
                    await self._threads.work(files.ensure_private_dir, self._results_dir)
                    # replace: an earlier attempt may have renamed it before its fsync failed
                    await self._files.write(workflow_id, pending.data, replace=True)
                except OSError as exc:
                    pending.failures += 1
                    name = _errno_name(exc)
                    STORE_WRITE_FAILURES.labels(error=name).inc()
                    if self._closing.is_set():
                        logger.critical(
                            "store: workflow {}: last write attempt at shutdown failed ({}: {})",
                            workflow_id,
                            name,
                            exc.strerror or exc,
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
                    await self._written(pending)
                    record = pending.record
                    if record.delivery_state is not DeliveryState.PENDING:
                        # Delivered while only memory held it: its mark failed with the disk.
                        mark = DeliveryMark(
                            record.delivery_state,
                            record.delivered_via or "",
                            record.delivered_at or self._clock(),
                        )
                        await self._write_mark(workflow_id, mark)
                    return
            delay_s = min(delay_s * 2, self._settings.write_retry_max)

    # -- delivery bookkeeping ------------------------------------------------------------------

    async def mark_delivered(self, workflow_id: str, via: str) -> None:
        """Record that the user got the result, and how (the ladder's rung)."""
        await self._set_delivery(workflow_id, DeliveryState.DELIVERED, via)

    async def mark_undeliverable(self, workflow_id: str, reason: str) -> None:
        """Record that every way to deliver failed. The reason is kept in `delivered_via`. The
        result stays retrievable (and, from then on, subject to retention)."""
        logger.warning("store: workflow {}: undeliverable: {}", workflow_id, reason)
        await self._set_delivery(workflow_id, DeliveryState.UNDELIVERABLE, reason)

    async def _set_delivery(self, workflow_id: str, state: DeliveryState, via: str) -> None:
        """The row first (fsynced, and what every reader sees from then on), then the delivery
        mark beside the result (`delivery_mark`: it survives the index, so an index rebuilt from
        the files knows too). A failure of either is logged, not raised: it costs at most a
        second delivery, never a result, and must not turn a delivered result into a failed
        workflow."""
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
                found = True  # the index cannot say; the mark still records it
            if not found and pending is None:
                raise StoreError(f"unknown workflow {workflow_id}")
            await self._write_mark(workflow_id, DeliveryMark(state, via, at))

    async def _write_mark(self, workflow_id: str, mark: DeliveryMark) -> bool:
        """Write the delivery mark; False (logged as a WARNING, counted) if the disk refused it.

        Not an ERROR: no result is at stake. The index row, written durably first, keeps the
        delivery; only an index rebuilt from the files would deliver the result once more. (A
        result still waiting in memory gets its mark when its own write lands: `_retry`.)
        """
        try:
            await self._files.write_mark(workflow_id, encode_mark(workflow_id, mark))
        except OSError as exc:
            name = _errno_name(exc)
            STORE_WRITE_FAILURES.labels(error=name).inc()
            logger.warning(
                "store: workflow {}: delivery mark not written ({}: {}); the index records "
                "that it was {}",
                workflow_id,
                name,
                exc.strerror or exc,
                mark.state.value,
            )
            return False
        return True

    # -- reading -------------------------------------------------------------------------------

    async def get(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow's record, or None if this store never heard of it."""
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
        """The stored document: ``{"format", "workflow_id", "workflow": {...}, "result": ...}``.

        Served from memory while its write is pending. StoreError if there is no result (unknown,
        still running, lost) or the file is unreadable or corrupt (the message says which).
        """
        workflow_id = validate_workflow_id(workflow_id)
        self._check_open()
        if (pending := self._pending.get(workflow_id)) is not None:
            document: dict[str, Any] = await self._threads.work(read_back, pending.data)
            return document
        path = self._result_path(workflow_id)
        try:
            _size, document = await self._threads.work(_read_document, path, workflow_id)
        except FileNotFoundError:
            record = await self.get(workflow_id)
            if record is None:
                raise StoreError(f"no workflow {workflow_id}") from None
            raise StoreError(
                f"workflow {workflow_id} has no stored result (status {record.status.value})"
            ) from None
        except DocumentError as exc:
            logger.error("store: workflow {}: stored result is corrupt: {}", workflow_id, exc)
            raise StoreError(f"workflow {workflow_id}: stored result is corrupt: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"workflow {workflow_id}: cannot read result: {exc.strerror}") from exc
        return document

    async def search(self, query: ResultQuery) -> list[WorkflowRecord]:
        """Index rows matching `query`, newest first, one page (`limit`, `offset`)."""
        self._check_open()
        return await self._index.search(query)

    async def url_search_ready(self) -> None:
        """Read and wait for the statistics URL searches use (read in the background on the
        first URL search otherwise: a few seconds for a million rows; searches meanwhile are
        exact, only slower)."""
        self._check_open()
        await self._index.url_search_ready()

    async def count(self, query: ResultQuery) -> int:
        """How many rows match `query` in all (its `limit` and `offset` are ignored)."""
        self._check_open()
        return await self._index.count(query)

    async def recent_ids(
        self, user_id: int, prefix: str = "", limit: int = 25
    ) -> list[WorkflowRecord]:
        """A user's workflows whose id starts with `prefix`, newest first (for autocomplete).
        A prefix that no id could start with gives an empty list, not an error: it is typing."""
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
        """Rows still marked running: after a restart, workflows a dead process left behind."""
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

    # -- maintenance ---------------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport:
        """Make the index agree with the files, the files being the truth. Never deletes data.

        Order: finish half-done purges; settle stray temps (promote a complete one whose result
        is missing, remove one byte-identical to its result, quarantine the rest); re-index
        result files the index does not know; mark lost the rows that promise a result no file
        holds. Rows left running are not touched (the runner marks them interrupted). Ids with a
        write in flight in this process are skipped.
        """
        self._check_open()
        return await self._maintenance.reconcile()

    async def purge(
        self,
        *,
        older_than_s: float | None = None,
        before: float | None = None,
        include_undelivered: bool = False,
        dry_run: bool = False,
    ) -> int:
        """Delete finished results (file, delivery mark and row) that finished before the cutoff;
        return how many (or, with `dry_run`, how many would go). A purge asked for by hand: it
        does what it is told, whatever the clock says, and (unless a dry run) records a sweep,
        so retention's clock check takes this clock as its reference from then on.

        The cutoff is `before` (Unix seconds), or now minus `older_than_s`, or now minus
        ``retention_days``. Running workflows are never purged. Results not delivered yet are
        kept (and counted in a warning) unless `include_undelivered`: the runner delivers them
        at the next start, and retention must not be what loses a result nobody has seen.

        Order, so a crash at any point leaves something reconciliation finishes: mark the rows
        'purging' (committed, and hidden from every query), delete the files, delete the rows.
        """
        validate_purge(older_than_s=older_than_s, before=before)
        self._check_open()
        now = await self._host_time()
        cutoff = purge_cutoff(
            now_s=now.wall_s,
            retention_s=self._retention_s,
            older_than_s=older_than_s,
            before=before,
        )
        purged = await self._maintenance.purge(
            cutoff, now=now.wall_s, include_undelivered=include_undelivered, dry_run=dry_run
        )
        if not dry_run:
            await self._record_sweep(now)
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
        default cutoff, unless the clock is not believable (`clock_check`). Then it purges
        nothing, records nothing, and says why in a WARNING if anything would have gone."""
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
        if doubt is None:
            purged = await self._maintenance.purge(
                now.wall_s - self._retention_s,
                now=now.wall_s,
                include_undelivered=False,
                dry_run=False,
            )
            await self._record_sweep(now)
            return purged
        would = await self._maintenance.purge(
            now.wall_s - self._retention_s, now=now.wall_s, include_undelivered=False, dry_run=True
        )
        if would:
            logger.warning(
                "store: retention purged nothing ({} result(s) would have gone): {}. It purges "
                "again once the clock is believable, or after an operator's `python -m notifier "
                "results purge --older-than {}d` (with the bot stopped), which makes this clock "
                "the reference",
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
