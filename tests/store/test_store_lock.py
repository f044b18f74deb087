"""One process maintains a store at a time: the second `ResultStore.open` on the same
`storage.path` is refused (StoreLocked, naming the path and the holder's PID) before it touches
anything, readers still work beside the holder, and the lock goes with the holder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.config import StorageSettings
from notifier.errors import StoreError, StoreLocked
from notifier.records import DeliveryState, WorkflowStatus
from notifier.store import ResultStore, StoreLock

from .support import EXAMPLE_RESULT, finished, make_record

# The flock on storage.path that one SQLite store holds; PostgreSQL stores are shared by design.
pytestmark = pytest.mark.sqlite_only


async def test_a_second_store_on_the_same_path_is_refused_and_the_first_keeps_its_results(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as first:
        running = make_record()
        await first.create(running)

        with pytest.raises(StoreLocked) as refused:
            await ResultStore.open(storage)

        # The refusal is one line naming the path and the PID that holds it.
        message = str(refused.value)
        assert message.splitlines() == [message]
        assert str(storage.path) in message and f"PID {os.getpid()}" in message
        assert (refused.value.path, refused.value.pid) == (str(storage.path), os.getpid())
        # The first bot's workflow was not touched, and its real result is stored.
        row = await first.get(running.workflow_id)
        assert row is not None and row.status is WorkflowStatus.RUNNING
        stored = await first.finish(
            running.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
        )
        assert stored.document["result"] == EXAMPLE_RESULT
        await first.mark_delivered(running.workflow_id, "interaction")

    async with await ResultStore.open(storage) as after:  # released on close
        row = await after.get(running.workflow_id)
    assert row is not None and row.delivery_state is DeliveryState.DELIVERED


async def test_readers_work_beside_the_holder(storage: StorageSettings) -> None:
    async with await ResultStore.open(storage) as bot:
        record = await finished(bot)
        async with await ResultStore.open(storage, maintain=False) as reader:
            document = await reader.read_result(record.workflow_id)
            with pytest.raises(StoreLocked):
                await ResultStore.open(storage, maintain=False, exclusive=True)
    assert document["result"] == EXAMPLE_RESULT


async def test_the_lock_file_is_private_and_names_its_holder_only_while_held(
    storage: StorageSettings,
) -> None:
    lock = storage.path / "lock"
    async with await ResultStore.open(storage):
        assert lock.read_text() == f"{os.getpid()}\n"
        assert lock.stat().st_mode & 0o777 == 0o600
    assert lock.read_text() == ""


def test_a_lock_held_by_another_process_names_that_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from notifier.store import StoreLock; "
            "StoreLock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StoreLocked, match=f"PID {holder.pid}"):
            StoreLock.acquire(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    StoreLock.acquire(tmp_path).release()  # the kernel released it with the process


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep me")
    store = tmp_path / "store"
    store.mkdir()
    (store / "lock").symlink_to(elsewhere)

    with pytest.raises(StoreError, match="lock file"):
        StoreLock.acquire(store)
    assert elsewhere.read_text() == "keep me"
