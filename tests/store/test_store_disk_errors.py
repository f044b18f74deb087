"""When the disk refuses a result, finish() still returns, the result stays readable from memory,
operators are told (counter, log, hook) and the write is retried until it lands.

Tests run as root, where chmod does not stop writes, so the refusal is injected at the lowest
level the store calls: `os.fsync` of the result's temp file raises for the first N attempts.
"""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from notifier.config import StorageSettings
from notifier.records import DeliveryState, WorkflowStatus
from notifier.store import ResultStore
from notifier.testing import wait_until

from .support import EXAMPLE_RESULT, FakeClock, make_record, metric, result_files

# The disk refusing result files (os.fsync made to fail): the SQLite backend's files only.
# PostgreSQL refusing a result is tests/store/test_postgres_store.py's.
pytestmark = pytest.mark.sqlite_only


class FlakyDisk:
    """Replaces os.fsync: the first `failures` calls raise OSError(code), later ones work."""

    def __init__(self, code: int, failures: int) -> None:
        self.code = code
        self.failures = failures
        self.calls = 0
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(self.code, os.strerror(self.code))
        self._real(fd)


class Hook:
    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException]] = []

    async def __call__(self, workflow_id: str, exc: BaseException) -> None:
        self.calls.append((workflow_id, exc))


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (errno.ENOSPC, "ENOSPC"),
        (errno.EACCES, "EACCES"),
        (errno.EROFS, "EROFS"),
        (errno.EIO, "EIO"),
    ],
)
async def test_a_refused_write_is_kept_in_memory_reported_and_retried(
    storage: StorageSettings,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: list[str],
    code: int,
    name: str,
) -> None:
    hook = Hook()
    store = await ResultStore.open(storage, clock=clock, on_storage_error=hook)
    try:
        record = make_record()
        await store.create(record)
        failures_before = metric("notifier_store_write_failures_total", error=name)
        disk = FlakyDisk(code, failures=3)
        monkeypatch.setattr(os, "fsync", disk)

        stored = (
            await store.finish(
                record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
            )
        ).record

        # finish() returned; the result is readable and shown as finished meanwhile.
        assert stored.status is WorkflowStatus.COMPLETED
        assert (await store.read_result(record.workflow_id))["result"] == EXAMPLE_RESULT
        got = await store.get(record.workflow_id)
        assert got is not None and got.status is WorkflowStatus.COMPLETED
        assert [r.workflow_id for r in await store.pending_delivery()] == [record.workflow_id]
        # Operators and the fanout were told.
        assert metric("notifier_store_write_failures_total", error=name) >= failures_before + 1
        assert [(w, getattr(e, "errno", None)) for w, e in hook.calls] == [
            (record.workflow_id, code)
        ]
        assert any(
            line.startswith("ERROR") and record.workflow_id in line and name in line
            for line in log_lines
        )

        # The retries land it on disk, and the index learns where.
        await wait_until(lambda: not store.pending_writes)
        assert disk.calls > 3
        assert metric("notifier_store_write_failures_total", error=name) == failures_before + 3
        assert result_files(storage.path) == [f"{record.workflow_id}.json"]
        got = await store.get(record.workflow_id)
        assert got is not None and got.path == f"results/{record.workflow_id}.json"
        assert got.size_bytes is not None and got.size_bytes > 0
        assert len(hook.calls) == 1  # told once, not once per retry
    finally:
        await store.close()

    async with await ResultStore.open(storage, clock=clock) as reopened:
        assert (await reopened.read_result(record.workflow_id))["result"] == EXAMPLE_RESULT


async def test_delivery_recorded_while_the_write_is_pending_is_kept(
    storage: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = storage.model_copy(update={"write_retry_initial": 30.0, "write_retry_max": 30.0})
    store = await ResultStore.open(slow)
    record = make_record()
    await store.create(record)
    # The result's write fails, then the delivery mark's: the disk is full for both.
    monkeypatch.setattr(os, "fsync", FlakyDisk(errno.ENOSPC, failures=2))
    await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT)
    assert store.pending_writes == (record.workflow_id,)

    await store.mark_delivered(record.workflow_id, "dm")
    assert result_files(storage.path) == []
    await store.close()  # the last attempt at close succeeds, and writes the mark too

    assert result_files(storage.path) == [
        f"{record.workflow_id}.delivered",
        f"{record.workflow_id}.json",
    ]
    async with await ResultStore.open(storage) as reopened:
        got = await reopened.get(record.workflow_id)
    assert got is not None
    assert (got.delivery_state, got.delivered_via) == (DeliveryState.DELIVERED, "dm")
    # Even an index rebuilt from the files knows it was delivered.
    (storage.path / "index.sqlite3").unlink()
    async with await ResultStore.open(storage) as rebuilt:
        again = await rebuilt.get(record.workflow_id)
        assert await rebuilt.pending_delivery() == []
    assert again is not None
    assert (again.delivery_state, again.delivered_via) == (DeliveryState.DELIVERED, "dm")


async def test_a_write_still_refused_at_close_is_logged_critical(
    storage: StorageSettings, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    slow = storage.model_copy(update={"write_retry_initial": 30.0, "write_retry_max": 30.0})
    store = await ResultStore.open(slow)
    record = make_record()
    await store.create(record)
    monkeypatch.setattr(os, "fsync", FlakyDisk(errno.EIO, failures=1_000))
    await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT)

    await store.close()

    assert any(line.startswith("CRITICAL") and record.workflow_id in line for line in log_lines)


async def test_a_failing_hook_does_not_undo_the_result(
    storage: StorageSettings, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    async def broken_hook(workflow_id: str, exc: BaseException) -> None:
        raise RuntimeError("fanout is down")

    store = await ResultStore.open(storage, on_storage_error=broken_hook)
    try:
        record = make_record()
        await store.create(record)
        monkeypatch.setattr(os, "fsync", FlakyDisk(errno.ENOSPC, failures=1))

        stored = (
            await store.finish(
                record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
            )
        ).record

        assert stored.status is WorkflowStatus.COMPLETED
        await wait_until(lambda: not store.pending_writes)
        assert result_files(storage.path) == [f"{record.workflow_id}.json"]
        assert any("on_storage_error hook failed" in line for line in log_lines)
    finally:
        await store.close()


async def test_an_index_that_refuses_writes_does_not_lose_the_result(
    storage: StorageSettings, log_lines: list[str]
) -> None:
    store = await ResultStore.open(storage)
    record = make_record()
    try:
        await store.create(record)
        # A real SQLite failure on every update of the table, from outside the store.
        with sqlite3.connect(storage.path / "index.sqlite3") as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE ON workflows "
                "BEGIN SELECT RAISE(ABORT, 'simulated index failure'); END"
            )
        failures_before = metric("notifier_store_write_failures_total", error="index")

        stored = (
            await store.finish(
                record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
            )
        ).record

        assert stored.status is WorkflowStatus.COMPLETED
        assert result_files(storage.path) == [f"{record.workflow_id}.json"]
        assert (await store.read_result(record.workflow_id))["result"] == EXAMPLE_RESULT
        assert metric("notifier_store_write_failures_total", error="index") == failures_before + 1
        assert any("not indexed" in line for line in log_lines)
    finally:
        await store.close()
    with sqlite3.connect(storage.path / "index.sqlite3") as db:
        db.execute("DROP TRIGGER refuse")

    async with await ResultStore.open(storage) as reopened:  # the file is the truth
        got = await reopened.get(record.workflow_id)
    assert got is not None and got.status is WorkflowStatus.COMPLETED


async def test_the_hook_may_use_the_store_for_the_same_workflow(
    storage: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    async def fanout_hook(workflow_id: str, exc: BaseException) -> None:
        # What a fanout does: look the workflow up, read the result, even repeat the finish.
        seen.append(await store.get(workflow_id))
        seen.append((await store.read_result(workflow_id))["result"])
        seen.append(
            await store.finish(workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT)
        )

    store = await ResultStore.open(storage, on_storage_error=fanout_hook)
    try:
        record = make_record()
        await store.create(record)
        monkeypatch.setattr(os, "fsync", FlakyDisk(errno.ENOSPC, failures=1))

        await store.finish(
            record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
        )

        assert len(seen) == 3
        assert seen[1] == EXAMPLE_RESULT
        await wait_until(lambda: not store.pending_writes)
    finally:
        await store.close()
