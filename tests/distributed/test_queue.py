"""The job queue on PostgreSQL: one queued job per workflow (procrastinate's queueing lock), a
job deferred in a transaction that rolls back is never queued, and a connection lost under the
queue's worker is one warning line in the operator's log, not a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
import pytest
from procrastinate.exceptions import ConnectorException

from notifier.config import StorageSettings
from notifier.distributed.queue import QUEUE, RUN_WORKFLOW, build_app, defer_workflow
from notifier.records import WorkflowRecord, new_workflow_id
from notifier.store.postgres import PostgresStore
from notifier.testing import wait_until
from notifier.testing.logs import production_logs


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


async def _one_value(dsn: str, query: str) -> Any:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute(query)).fetchone()
        return None if row is None else row[0]


async def test_a_heartbeat_cut_off_by_postgresql_is_recorded_again_and_the_worker_goes_on(
    postgres_dsn: str,
) -> None:
    """PostgreSQL ends the connection of the queue worker's heartbeat mid-query, as a restart
    does. procrastinate alone would end its heartbeat task unseen and run on with no heartbeat
    (its live jobs then retried elsewhere after the stall timeout); here the heartbeat is
    recorded again, the same worker takes the next job, and the operator's log holds one
    warning line and no traceback."""
    store = await PostgresStore.open(StorageSettings(backend="postgres", postgres_dsn=postgres_dsn))
    await store.close()  # it migrated the queue's tables
    ran: list[str] = []
    with production_logs("INFO") as logs:
        app = build_app(postgres_dsn, heartbeat_retry_s=0.1)

        @app.task(name=RUN_WORKFLOW, queue=QUEUE)
        async def run_workflow(workflow_id: str) -> None:
            ran.append(workflow_id)

        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[QUEUE],
                    wait=True,
                    install_signal_handlers=False,
                    listen_notify=False,
                    update_heartbeat_interval=0.2,
                    fetch_job_polling_interval=0.2,
                )
            )
            await wait_until(
                lambda: _one_value(postgres_dsn, "SELECT count(*) FROM procrastinate_workers"),
                what="the queue's worker registered",
            )
            # Hold the worker's row, so that its next heartbeat waits on the lock, then end
            # that backend the way a server shutting down does.
            async with await psycopg.AsyncConnection.connect(postgres_dsn) as holder:
                await holder.execute("SELECT id FROM procrastinate_workers FOR UPDATE")
                waiting = (
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'notifier-queue' AND wait_event_type = 'Lock'"
                    " AND query ILIKE '%heartbeat%'"
                )
                await wait_until(
                    lambda: _one_value(postgres_dsn, waiting), what="a heartbeat waiting"
                )
                pid = await _one_value(postgres_dsn, waiting)
                await _one_value(postgres_dsn, f"SELECT pg_terminate_backend({int(pid)})")
                cut_at = await _one_value(postgres_dsn, "SELECT now()")
                await holder.rollback()

            await wait_until(
                lambda: _one_value(
                    postgres_dsn,
                    f"SELECT count(*) FROM procrastinate_workers"
                    f" WHERE last_heartbeat > '{cut_at.isoformat()}'",
                ),
                what="the heartbeat recorded again",
            )
            workflow_id = new_workflow_id()
            assert await defer_workflow(app, workflow_id) is not None
            await wait_until(lambda: ran == [workflow_id], what="the next job run")
            assert not worker.done()
            assert await _one_value(postgres_dsn, "SELECT count(*) FROM procrastinate_workers") == 1

            # procrastinate's own tracebacks of a lost database are one warning line each...
            try:
                try:
                    raise psycopg.errors.AdminShutdown("terminating connection (administrator)")
                except psycopg.Error as exc:
                    raise ConnectorException() from exc
            except ConnectorException:
                logging.getLogger("procrastinate.worker").exception("poll_jobs_to_abort error")
            # ... and a bug in a library still shows its traceback.
            try:
                raise ValueError("not an outage")
            except ValueError:
                logging.getLogger("procrastinate.worker").exception("side task failed")

            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    text = logs.text()
    cut = [line for line in logs.lines if "heartbeat of worker" in line]
    assert len(cut) == 2, text
    assert "WARNING" in cut[0] and "not recorded: PostgreSQL unreachable (" in cut[0]
    assert "administrator command" in cut[0]
    assert "recorded again after 1 failed tries" in cut[1]
    polled = [line for line in logs.lines if "poll_jobs_to_abort error" in line]
    assert len(polled) == 1 and "WARNING" in polled[0], text
    assert "PostgreSQL unreachable (terminating connection (administrator))" in polled[0]
    assert text.count("Traceback") == 1 and "ValueError: not an outage" in text, text
