"""The distributed mode under faults, on a PostgreSQL cluster of the test's own (it is restarted):
a gateway and two workers as processes against the emulator.

In order, on the same processes:
1. a second job for a workflow that is running (a handover racing a late job) runs nothing: the
   workflow is run once, its steps all by one worker, one result;
2. `/workflow cancel` on the gateway stops the workflow on the worker that runs it; the user is
   told it was cancelled;
3. PostgreSQL restarted mid-run (`pg_ctl restart -m fast`): the workflow still completes, each
   step recorded once, one result; the gateway and the workers serve a new command afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from notifier.distributed.queue import build_app, defer_workflow
from notifier.testing import DiscordEmulator, text_of
from notifier.testing.gateway import ShardingConfig
from notifier.testing.polling import wait_until
from notifier.testing.postgres import ThrowawayCluster
from notifier.testing.pytest_plugin import no_postgres

from .test_gateway_and_workers import LIMIT_S, process, rows, workflow_ids_told, write_config


@pytest.fixture
async def cluster() -> AsyncIterator[ThrowawayCluster]:
    """A cluster this test may restart (never the machine's shared server): skipped, or failed
    under NOTIFIER_REQUIRE_POSTGRES=1, where initdb/pg_ctl cannot start one."""
    own = ThrowawayCluster()
    try:
        await asyncio.to_thread(own.start)
    except Exception as exc:
        await asyncio.to_thread(own.stop)
        no_postgres(f"cannot start a throwaway cluster: {exc}", os.environ)
    try:
        yield own
    finally:
        await asyncio.to_thread(own.stop)


async def running_with_steps(dsn: str, at_least: int) -> str | None:
    found = await rows(
        dsn,
        "SELECT w.workflow_id FROM workflows w JOIN workflow_steps s USING (workflow_id) "
        "WHERE w.status = 'running' GROUP BY w.workflow_id HAVING count(*) >= %s",
        at_least,
    )
    return str(found[0][0]) if found else None


async def status_of(dsn: str, workflow_id: str) -> tuple[str, str] | None:
    found = await rows(
        dsn, "SELECT status, delivery_state FROM workflows WHERE workflow_id = %s", workflow_id
    )
    return (str(found[0][0]), str(found[0][1])) if found else None


async def test_a_late_job_a_cancel_and_a_postgres_restart(
    discord_emulator: DiscordEmulator, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    emulator = discord_emulator
    dsn = cluster.dsn
    config = write_config(tmp_path, emulator, dsn)
    gateway_args = ("run", "--role", "gateway", "--config", str(config))
    worker_args = ("worker", "--config", str(config))
    emulator.sharding = ShardingConfig(shards=2, max_concurrency=1, identify_window_s=0.2)
    guild = emulator.add_guild("Zero", shard=0)

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(process(emulator, *gateway_args))
        await emulator.wait_until_shards_connected(0, 1, timeout_s=LIMIT_S)
        await emulator.wait_for_commands("stepper", timeout_s=LIMIT_S)
        workers = [
            await stack.enter_async_context(process(emulator, *worker_args)) for _ in range(2)
        ]
        for worker in workers:
            await worker.wait_until(
                lambda w=worker: w.stderr_has("taking workflow jobs"), what="worker ready"
            )

        # 1. A second job for a running workflow runs nothing.
        await emulator.trigger_command(
            "stepper", {"steps": 6, "pause": 0.3}, guild=guild.id, user="alice"
        )
        await wait_until(lambda: running_with_steps(dsn, 1), timeout_s=LIMIT_S, what="running")
        raced = await running_with_steps(dsn, 1)
        assert raced is not None
        app = build_app(dsn)
        async with app.open_async():
            assert await defer_workflow(app, raced) is not None  # its first job is doing
        await wait_until(
            lambda: any(w.stderr_has(f"workflow {raced} is run by job") for w in workers),
            timeout_s=LIMIT_S,
            what="the late job refused",
        )
        await wait_until(
            lambda: workflow_ids_told(emulator)[raced] == 1, timeout_s=LIMIT_S, what="result"
        )
        pids = await rows(
            dsn,
            "SELECT DISTINCT convert_from(value, 'UTF8')::jsonb ->> 'pid' FROM workflow_steps "
            "WHERE workflow_id = %s",
            raced,
        )
        assert len(pids) == 1
        assert await status_of(dsn, raced) == ("completed", "delivered")

        # 2. /workflow cancel on the gateway stops it on its worker.
        await emulator.trigger_command(
            "stepper", {"steps": 40, "pause": 0.3}, guild=guild.id, user="bob"
        )
        await wait_until(lambda: running_with_steps(dsn, 2), timeout_s=LIMIT_S, what="running")
        long_one = await running_with_steps(dsn, 2)
        assert long_one is not None
        cancel = await emulator.trigger_command(
            "workflow",
            {"workflow_id": long_one},
            subcommand="cancel",
            guild=guild.id,
            user="bob",
        )
        await cancel.wait_for_message(lambda m: "Cancelled" in text_of(m), timeout_s=LIMIT_S)

        async def cancelled() -> bool:
            return await status_of(dsn, long_one) == ("cancelled", "delivered")

        await wait_until(cancelled, timeout_s=LIMIT_S, what="the worker stopped it")
        [(steps,)] = await rows(
            dsn, "SELECT count(*) FROM workflow_steps WHERE workflow_id = %s", long_one
        )
        assert steps < 40

        # 3. PostgreSQL restarted mid-run.
        await emulator.trigger_command(
            "stepper", {"steps": 10, "pause": 0.3}, guild=guild.id, user="carol"
        )
        await wait_until(lambda: running_with_steps(dsn, 3), timeout_s=LIMIT_S, what="running")
        survivor = await running_with_steps(dsn, 3)
        assert survivor is not None
        await asyncio.to_thread(cluster.restart)

        async def survived() -> bool:
            try:
                return await status_of(dsn, str(survivor)) == ("completed", "delivered")
            except psycopg.OperationalError:
                return False

        await wait_until(survived, timeout_s=LIMIT_S, what="completed after the restart")
        [(recorded, distinct)] = await rows(
            dsn,
            "SELECT count(*), count(DISTINCT step_index) FROM workflow_steps "
            "WHERE workflow_id = %s",
            survivor,
        )
        assert recorded == distinct == 10
        assert workflow_ids_told(emulator)[str(survivor)] == 1

        after = await emulator.trigger_command(
            "stepper", {"steps": 2}, guild=guild.id, user="carol"
        )
        await after.wait_for_message(lambda m: "completed" in text_of(m), timeout_s=LIMIT_S)
        for worker in workers:
            await worker.stop()
