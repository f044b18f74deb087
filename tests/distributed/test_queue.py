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


async def test_an_interaction_token_is_read_while_it_lives_and_swept_once_expired(
    postgres_dsn: str,
) -> None:
    from notifier.distributed import tokens
    from notifier.logs import redactor

    settings = StorageSettings(backend="postgres", postgres_dsn=postgres_dsn)
    store = await PostgresStore.open(settings)
    try:
        record = WorkflowRecord(workflow_id=new_workflow_id(), command="stepper", user_id=1)
        secret = f"interaction-token-{new_workflow_id()}"
        interaction = tokens.StoredInteraction(secret, created_at=1_000.0, attachment_limit_bytes=8)

        async def keep(conn: Any) -> None:
            await tokens.put(conn, record.workflow_id, interaction, ttl_s=900.0)

        await store.create(record, inside=keep)
        async with store.database.connection() as conn:
            alive = await tokens.read(conn, record.workflow_id, now=1_899.0)
            expired = await tokens.read(conn, record.workflow_id, now=1_900.0)
            assert await tokens.sweep(conn, now=1_899.0) == 0
            assert await tokens.sweep(conn, now=1_900.0) == 1
            after = await tokens.read(conn, record.workflow_id, now=0.0)
        assert alive == interaction and expired is None and after is None
        assert redactor.redact(f"POST /webhooks/1/{secret}") == "POST /webhooks/1/***"
        assert secret not in redactor.redact(f"token {secret}")
    finally:
        await store.close()
