"""The distributed mode end to end: a gateway holding 2 shards and two workers, as processes,
on one PostgreSQL database, against the emulator.

One set of processes serves the whole story, in order (lean: starting bots costs seconds):
1. 20 workflows from three users in guilds on both shards: every one stored, run by a worker
   (both workers take some), and delivered to its user exactly once.
2. kill -9 of the worker running a 15-step workflow once 7 steps are recorded: the other worker
   resumes it from step 8 (the step values name the process that ran them), and the user gets
   one result and one "resumed" notice.
3. kill -9 of the gateway while a worker runs a workflow: the result still reaches the user, and
   a restarted gateway serves it with /retrieve_results.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import yaml

from notifier.testing import BotProcess, DiscordEmulator, child_env, every_message, text_of
from notifier.testing.gateway import ShardingConfig
from notifier.testing.polling import wait_until
from notifier.testing.project_bot import PROJECT_ROOT
from notifier.testing.workflow_sources import STEPPER

LIMIT_S = 90.0
SHARDS = 2


def write_config(tmp_path: Path, emulator: DiscordEmulator, dsn: str) -> Path:
    """One config.yaml for every process: the shared database, short failure detection."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "stepper.py").write_text(STEPPER, encoding="utf-8")
    config: dict[str, Any] = {
        "discord": {
            "token": "${TEST_BOT_TOKEN}",
            "api_base": emulator.api_base,
            "shard_count": SHARDS,
            "identify_window": 0.2,
        },
        "storage": {"backend": "postgres", "postgres_dsn": dsn, "path": str(tmp_path / "data")},
        "workflows": {"dirs": [str(tmp_path / "workflows")]},
        "fanout": {"plugin_dirs": []},
        "progress": {"min_interval": 0.2},
        "runner": {"shutdown_grace": 2.0, "max_concurrent": 4, "max_per_user": 10},
        "distributed": {
            "heartbeat": 1.0,
            "stall_timeout": 6.0,
            "sweep_interval": 0.5,
            "fetch_polling": 0.2,
        },
        "logging": {"level": "INFO"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def process(
    emulator: DiscordEmulator, *args: str
) -> contextlib.AbstractAsyncContextManager[BotProcess]:
    return BotProcess.running(
        sys.executable,
        "-m",
        "notifier",
        *args,
        cwd=PROJECT_ROOT,
        env=child_env(TEST_BOT_TOKEN=emulator.bot_token),
        token=emulator.bot_token,
    )


async def rows(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall()


def workflow_ids_told(emulator: DiscordEmulator) -> Counter[str]:
    """How many result messages name each workflow (a delivered result says 'completed')."""
    told: Counter[str] = Counter()
    for message in every_message(emulator):
        text = text_of(message)
        if message.deleted or "completed" not in text:
            continue
        found = re.search(r"workflow `([0-9a-f]{32})`", text)
        if found:
            told[found.group(1)] += 1
    return told


async def test_a_gateway_and_two_workers_deliver_every_result_once_and_survive_kills(
    discord_emulator: DiscordEmulator, postgres_dsn: str, tmp_path: Path
) -> None:
    emulator = discord_emulator
    emulator.sharding = ShardingConfig(shards=SHARDS, max_concurrency=1, identify_window_s=0.2)
    guilds = [emulator.add_guild("Zero", shard=0), emulator.add_guild("One", shard=1)]
    config = write_config(tmp_path, emulator, postgres_dsn)
    gateway_args = ("run", "--role", "gateway", "--config", str(config))
    worker_args = ("worker", "--config", str(config))

    async with contextlib.AsyncExitStack() as stack:
        gateway = await stack.enter_async_context(process(emulator, *gateway_args))
        await emulator.wait_until_shards_connected(0, 1, timeout_s=LIMIT_S)
        await emulator.wait_for_commands("stepper", timeout_s=LIMIT_S)
        workers = [
            await stack.enter_async_context(process(emulator, *worker_args)) for _ in range(2)
        ]
        for worker in workers:
            await worker.wait_until(
                lambda w=worker: w.stderr_has("taking workflow jobs"), what="worker ready"
            )
        # Workers yield the CPU to the gateway (distributed.worker_nice, 5 by default).
        assert {os.getpriority(os.PRIO_PROCESS, w.pid) for w in workers} == {
            min(19, os.getpriority(os.PRIO_PROCESS, gateway.pid) + 5)
        }

        # 1. Twenty workflows from three users, on both shards.
        users = ["alice", "bob", "carol"]
        handles = [
            await emulator.trigger_command(
                "stepper",
                {"steps": 3},
                guild=guilds[number % 2].id,
                user=users[number % 3],
            )
            for number in range(20)
        ]

        async def all_delivered() -> bool:
            found = await rows(
                postgres_dsn,
                "SELECT count(*) FROM workflows WHERE status = 'completed' "
                "AND delivery_state = 'delivered'",
            )
            return found[0][0] == 20

        await wait_until(all_delivered, timeout_s=LIMIT_S, what="20 results delivered")
        told = workflow_ids_told(emulator)
        stored = [r[0] for r in await rows(postgres_dsn, "SELECT workflow_id FROM workflows")]
        assert sorted(told) == sorted(stored) and set(told.values()) == {1}, told
        ran_by = await rows(
            postgres_dsn,
            "SELECT DISTINCT convert_from(value, 'UTF8')::jsonb ->> 'pid' FROM workflow_steps",
        )
        assert {int(r[0]) for r in ran_by} == {w.pid for w in workers}  # both took jobs
        # The interaction tokens the gateway stored for the workers: gone once each workflow
        # concluded, and in no process's output.
        assert await rows(postgres_dsn, "SELECT count(*) FROM notifier_interaction_tokens") == [
            (0,)
        ]
        outputs = [p.output() for p in (gateway, *workers)]
        assert not [h.token for h in handles if any(h.token in o for o in outputs)]

        # 2. kill -9 of the worker running a long workflow at step 7 of 15.
        long_run = await emulator.trigger_command(
            "stepper", {"steps": 15, "pause": 0.3}, guild=guilds[0].id, user="alice"
        )

        async def long_workflow() -> str | None:
            found = await rows(
                postgres_dsn,
                "SELECT w.workflow_id FROM workflows w JOIN workflow_steps s USING (workflow_id) "
                "WHERE w.status = 'running' GROUP BY w.workflow_id HAVING count(*) >= 7",
            )
            return found[0][0] if found else None

        await wait_until(long_workflow, timeout_s=LIMIT_S, what="7 steps recorded")
        workflow_id = await long_workflow()
        assert workflow_id is not None
        [(pid,)] = await rows(
            postgres_dsn,
            "SELECT DISTINCT convert_from(value, 'UTF8')::jsonb ->> 'pid' FROM workflow_steps "
            "WHERE workflow_id = %s",
            workflow_id,
        )
        victim = next(w for w in workers if w.pid == int(pid))
        survivor = next(w for w in workers if w is not victim)
        await victim.kill_9()

        async def long_done() -> bool:
            found = await rows(
                postgres_dsn,
                "SELECT status, delivery_state FROM workflows WHERE workflow_id = %s",
                workflow_id,
            )
            return found == [("completed", "delivered")]

        await wait_until(long_done, timeout_s=LIMIT_S, what="the long workflow resumed and done")
        steps = await rows(
            postgres_dsn,
            "SELECT step_index, (convert_from(value, 'UTF8')::jsonb ->> 'pid')::int "
            "FROM workflow_steps WHERE workflow_id = %s ORDER BY step_index",
            workflow_id,
        )
        assert len(steps) == 15
        killed_at = next(i for i, (_, p) in enumerate(steps) if p == survivor.pid)
        assert killed_at >= 7  # nothing recorded before the kill ran again
        assert all(p == victim.pid for _, p in steps[:killed_at])
        assert all(p == survivor.pid for _, p in steps[killed_at:])
        assert workflow_ids_told(emulator)[workflow_id] == 1
        resumed = [
            m for m in every_message(emulator) if "resumed after a worker stopped" in text_of(m)
        ]
        assert len(resumed) == 1 and workflow_id in text_of(resumed[0])
        # Told on the interaction the gateway answered: its token outlived the worker.
        await long_run.wait_for_message(lambda m: "completed" in text_of(m), timeout_s=LIMIT_S)

        # 3. kill -9 of the gateway while the surviving worker runs a workflow.
        await emulator.trigger_command(
            "stepper", {"steps": 6, "pause": 0.3}, guild=guilds[1].id, user="bob"
        )

        async def third_running() -> str | None:
            found = await rows(
                postgres_dsn,
                "SELECT workflow_id FROM workflows WHERE status = 'running' AND progress > 0",
            )
            return found[0][0] if found else None

        await wait_until(third_running, timeout_s=LIMIT_S, what="the third workflow running")
        third = await third_running()
        await gateway.kill_9()

        async def third_done() -> bool:
            return workflow_ids_told(emulator)[str(third)] == 1

        await wait_until(third_done, timeout_s=LIMIT_S, what="the result without a gateway")
        identified = emulator.identify_count
        restarted = await stack.enter_async_context(process(emulator, *gateway_args))
        # Both shards identified anew (READY comes after the first one alone).
        await wait_until(lambda: emulator.identify_count >= identified + SHARDS, timeout_s=LIMIT_S)
        await emulator.wait_until_shards_connected(0, 1, timeout_s=LIMIT_S)
        await restarted.wait_until(lambda: restarted.stderr_has("ready as"), what="ready")
        handle = await emulator.trigger_command(
            "retrieve_results", {"workflow_id": str(third)}, guild=guilds[1].id, user="bob"
        )
        message = await handle.wait_for_message(
            lambda m: str(third) in text_of(m), timeout_s=LIMIT_S
        )
        assert "completed" in text_of(message)
        await survivor.stop()  # SIGTERM: exit 0, no traceback, no token in its output
