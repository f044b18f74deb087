"""The store does its blocking work on threads of its own: with asyncio's default pool taken by
work the store cannot bound (a workflow parsing a hostile page holds a thread for as long as the
parse takes, and a thread cannot be cancelled), results are still stored, delivered and read, on
every backend (tests/store/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import threading

from notifier.config import StorageSettings
from notifier.records import WorkflowStatus
from notifier.store import ResultQuery
from notifier.testing import wait_until

from .support import EXAMPLE_RESULT, make_record, opened

HANG_GUARD_S = 30.0  # only keeps a broken store from hanging the suite; nothing is timed


async def test_the_store_works_while_the_default_pool_is_taken(
    store_settings: StorageSettings,
) -> None:
    loop = asyncio.get_running_loop()
    workers = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default pool size
    release = threading.Event()
    started: list[int] = []

    def hostile_parse() -> None:
        started.append(1)
        release.wait()

    blockers = [loop.run_in_executor(None, hostile_parse) for _ in range(workers + 2)]
    try:
        await wait_until(lambda: len(started) == workers, what="every default thread taken")

        async def whole_life() -> dict[str, object]:
            async with opened(store_settings) as store:
                record = make_record()
                await store.create(record)
                await store.finish(
                    record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
                )
                await store.mark_delivered(record.workflow_id, "channel")
                assert [r.workflow_id for r in await store.search(ResultQuery())] == [
                    record.workflow_id
                ]
                assert (await store.reconcile()).clean
                await store.purge(older_than_s=0, dry_run=True)
                return await store.read_result(record.workflow_id)

        document = await asyncio.wait_for(whole_life(), HANG_GUARD_S)
        assert document["result"] == EXAMPLE_RESULT
        assert len(started) == workers  # the hostile work still holds every default thread
    finally:
        release.set()
        await asyncio.gather(*blockers)
