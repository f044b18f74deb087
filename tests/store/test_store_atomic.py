"""Atomic writes: a crash at any point leaves either no result file or a whole one, and the next
start settles whatever the crash left without losing or deleting data."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from notifier.config import StorageSettings
from notifier.errors import StoreError
from notifier.records import WorkflowStatus
from notifier.store import ResultStore
from notifier.store.document import build_document, encode_document
from notifier.testing import wait_until

from .support import EXAMPLE_RESULT, finished, make_record, result_files

# Crashes between a result file's temp write and its rename: files are SQLite's backend only.
pytestmark = pytest.mark.sqlite_only

CRASH_EXIT = 70

# Runs in its own process: creates a workflow, then dies (os._exit, no cleanup of any kind) at the
# moment the finished result's temp file is complete and about to be renamed into place.
CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from pathlib import Path
    from notifier.config import StorageSettings
    from notifier.records import WorkflowRecord, WorkflowStatus
    from notifier.store import ResultStore

    async def main(path, workflow_id, result):
        store = await ResultStore.open(StorageSettings(path=Path(path)))
        await store.create(WorkflowRecord(
            workflow_id=workflow_id, command="autointel", user_id=7,
            options={"url": "https://example.com/", "depth": "quick"}))
        def crash(src, dst):
            os._exit(CRASH_EXIT)
        os.replace = crash
        await store.finish(workflow_id, status=WorkflowStatus.COMPLETED, result=result)

    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
    """
).replace("CRASH_EXIT", str(CRASH_EXIT))


def _temps(storage: StorageSettings) -> list[Path]:
    return sorted((storage.path / "results").glob(".*.tmp"))


async def test_a_crash_between_temp_write_and_rename_loses_nothing(
    storage: StorageSettings,
) -> None:
    workflow_id = "c" * 32
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASHING_WRITER,
        str(storage.path),
        workflow_id,
        json.dumps(EXAMPLE_RESULT),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == CRASH_EXIT, stderr.decode()

    # What the crash left: the temp only; no partial <id>.json a reader could pick up.
    [temp] = _temps(storage)
    assert not (storage.path / "results" / f"{workflow_id}.json").exists()

    # A reader beside it (as the CLI opens the store) sees the old state: running, no result.
    async with await ResultStore.open(storage, maintain=False) as reader:
        record = await reader.get(workflow_id)
        assert record is not None and record.status is WorkflowStatus.RUNNING
        with pytest.raises(StoreError, match="no stored result"):
            await reader.read_result(workflow_id)
        assert temp.exists()

    # The next start finishes the write: the result is recovered, nothing is deleted.
    async with await ResultStore.open(storage) as store:
        record = await store.get(workflow_id)
        assert record is not None and record.status is WorkflowStatus.COMPLETED
        assert (await store.read_result(workflow_id))["result"] == EXAMPLE_RESULT
        assert [r.workflow_id for r in await store.pending_delivery()] == [workflow_id]
        assert _temps(storage) == []
        assert list((storage.path / "quarantine").iterdir()) == []
        assert (await store.reconcile()).clean


async def test_a_partial_temp_is_quarantined_and_the_old_state_kept(
    storage: StorageSettings, log_lines: list[str]
) -> None:
    record = make_record()
    async with await ResultStore.open(storage) as store:
        await store.create(record)
    finished_record = make_record(workflow_id=record.workflow_id)
    finished_record.status = WorkflowStatus.COMPLETED
    finished_record.finished_at = 1.0
    whole = encode_document(build_document(finished_record, EXAMPLE_RESULT))
    partial = whole[: len(whole) // 2]  # a crash in the middle of the write
    temp = storage.path / "results" / f".{record.workflow_id}.{'0' * 16}.tmp"
    temp.write_bytes(partial)

    async with await ResultStore.open(storage) as store:
        row = await store.get(record.workflow_id)
        assert row is not None and row.status is WorkflowStatus.RUNNING  # the runner's to mark
        with pytest.raises(StoreError):
            await store.read_result(record.workflow_id)
        assert (await store.reconcile()).clean

    [kept] = (storage.path / "quarantine").iterdir()
    assert kept.read_bytes() == partial
    assert result_files(storage.path) == []
    assert any("quarantined" in line and "partial write" in line for line in log_lines)


async def test_a_temp_identical_to_the_finished_result_is_removed(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as store:
        stored = await finished(store)
    final = storage.path / "results" / f"{stored.workflow_id}.json"
    leftover = final.with_name(f".{stored.workflow_id}.{'1' * 16}.tmp")
    leftover.write_bytes(final.read_bytes())

    async with await ResultStore.open(storage) as store:
        assert (await store.read_result(stored.workflow_id))["result"] == EXAMPLE_RESULT
    assert not leftover.exists()
    assert list((storage.path / "quarantine").iterdir()) == []


async def test_a_temp_differing_from_the_finished_result_is_quarantined(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as store:
        stored = await finished(store)
    final = storage.path / "results" / f"{stored.workflow_id}.json"
    other = json.loads(final.read_bytes())
    other["result"] = {"something": "else"}
    other_bytes = json.dumps(other).encode()
    final.with_name(f".{stored.workflow_id}.{'2' * 16}.tmp").write_bytes(other_bytes)
    final_bytes = final.read_bytes()

    async with await ResultStore.open(storage) as store:
        assert (await store.read_result(stored.workflow_id))["result"] == EXAMPLE_RESULT

    assert final.read_bytes() == final_bytes
    [kept] = (storage.path / "quarantine").iterdir()
    assert kept.read_bytes() == other_bytes


async def test_a_failed_rename_leaves_no_partial_file_and_is_retried(
    store: ResultStore, storage: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls = {"n": 0}

    def failing_once(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_once)
    record = make_record()
    await store.create(record)

    stored = (
        await store.finish(
            record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
        )
    ).record

    assert stored.status is WorkflowStatus.COMPLETED
    assert (await store.read_result(record.workflow_id))["result"] == EXAMPLE_RESULT
    await wait_until(lambda: not store.pending_writes)
    assert result_files(storage.path) == [f"{record.workflow_id}.json"]
    assert _temps(storage) == []
