"""The job queue on PostgreSQL: one queued job per workflow (procrastinate's queueing lock), and
a job deferred in a transaction that rolls back is never queued."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from notifier.config import StorageSettings
from notifier.distributed.queue import QUEUE, RUN_WORKFLOW, build_app, defer_workflow
from notifier.records import WorkflowRecord, new_workflow_id
from notifier.store.postgres import PostgresStore


async def jobs(dsn: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT args ->> 'workflow_id', status FROM procrastinate_jobs "
            "WHERE queue_name = %s AND task_name = %s ORDER BY id",
            (QUEUE, RUN_WORKFLOW),
        )
        return await cursor.fetchall()


async def test_a_workflow_is_queued_once_and_a_rolled_back_start_queues_nothing(
    postgres_dsn: str,
) -> None:
    settings = StorageSettings(backend="postgres", postgres_dsn=postgres_dsn)
    store = await PostgresStore.open(settings)  # migrates the store's and the queue's sets
    app = build_app(postgres_dsn)
    try:
        async with app.open_async():
            first = WorkflowRecord(workflow_id=new_workflow_id(), command="stepper", user_id=1)

            async def queue_it(conn: Any) -> None:
                assert await defer_workflow(app, first.workflow_id, conn=conn) is not None

            await store.create(first, inside=queue_it)
            # Two gateways (or a retry) queueing it again: the queueing lock keeps one job.
            assert await defer_workflow(app, first.workflow_id) is None
            assert await defer_workflow(app, first.workflow_id) is None

            second = WorkflowRecord(workflow_id=new_workflow_id(), command="stepper", user_id=1)

            async def queue_then_fail(conn: Any) -> None:
                await defer_workflow(app, second.workflow_id, conn=conn)
                raise RuntimeError("the gateway's transaction fails after queueing")

            with pytest.raises(RuntimeError, match="fails after queueing"):
                await store.create(second, inside=queue_then_fail)
            assert await store.get(second.workflow_id) is None
        assert await jobs(postgres_dsn) == [(first.workflow_id, "todo")]
    finally:
        await store.close()
