"""bot.py with gateway shards: processes holding their own shards, taking turns to IDENTIFY
through PostgreSQL, each answering its own guilds; a process configured for a held shard stops
in one line.

The emulator announces 2 shards with max_concurrency 1, so both shards identify in bucket 0 and
one IDENTIFY within the window gets op 9. Each process has its own SQLite store (the store is
not what this tests); they share one PostgreSQL database for their turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import psycopg
import yaml

from notifier.discord.identify import IDENTIFY_LOCK_CLASS, INVALID_SHARD
from notifier.testing import (
    BotProcess,
    DiscordEmulator,
    InteractionHandle,
    bot_process,
    child_env,
    text_of,
    wait_until,
)
from notifier.testing.gateway import ShardingConfig
from notifier.testing.project_bot import PROJECT_ROOT

WINDOW_S = 0.5
SHARDS = 2
LIMIT_S = 60.0

WHERE_WORKFLOW = """
import os

from notifier import Context, workflow


@workflow(description="Says which process ran it")
async def where(ctx: Context) -> dict:
    return {"pid": os.getpid()}
"""

# Waiting for the IDENTIFY turn of bucket 0 (the test holds it, see below).
_WAITERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted AND classid::bigint = %s AND objid::bigint = 0
  AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def write_config(
    tmp_path: Path, name: str, shard_id: int, emulator: DiscordEmulator, dsn: str
) -> Path:
    """One gateway process's config.yaml: its shard, its own store, the shared database."""
    folder = tmp_path / name
    (folder / "workflows").mkdir(parents=True)
    (folder / "workflows" / "where.py").write_text(WHERE_WORKFLOW, encoding="utf-8")
    config: dict[str, Any] = {
        "discord": {
            "token": "${TEST_BOT_TOKEN}",
            "api_base": emulator.api_base,
            "shard_count": SHARDS,
            "shard_ids": [shard_id],
            "identify_window": WINDOW_S,
        },
        "storage": {"path": str(folder / "data"), "postgres_dsn": dsn},
        "workflows": {"dirs": [str(folder / "workflows")]},
        "fanout": {"plugin_dirs": []},
        "progress": {"min_interval": 0.2},
        "runner": {"shutdown_grace": 2.0},
        "logging": {"level": "INFO"},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def answered(config: Path) -> dict[int, tuple[str, int]]:
    """guild id -> (workflow id, pid of the process that ran it) of each /where a process stored."""
    found: dict[int, tuple[str, int]] = {}
    for path in (config.parent / "data" / "results").glob("*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        found[document["workflow"]["guild_id"]] = (
            document["workflow_id"],
            document["result"]["pid"],
        )
    return found


async def workflow_id_told(handle: InteractionHandle) -> str:
    """The workflow id the user's result message names."""
    message = await handle.wait_for_message(lambda m: "completed" in text_of(m), timeout_s=LIMIT_S)
    found = re.search(r"workflow `([0-9a-f]{32})`", text_of(message))
    assert found, text_of(message)
    return found.group(1)


async def test_shards_in_two_processes_take_turns_answer_their_guilds_and_refuse_a_third(
    discord_emulator: DiscordEmulator, postgres_dsn: str, tmp_path: Path
) -> None:
    emulator = discord_emulator
    emulator.sharding = ShardingConfig(shards=SHARDS, max_concurrency=1, identify_window_s=WINDOW_S)
    on_zero = emulator.add_guild("Zero", shard=0)
    on_one = emulator.add_guild("One", shard=1)
    config_a = write_config(tmp_path, "a", 0, emulator, postgres_dsn)
    config_b = write_config(tmp_path, "b", 1, emulator, postgres_dsn)

    async with (
        await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as gate,
        contextlib.AsyncExitStack() as stack,
    ):
        # Both processes reach their first IDENTIFY at the same moment: the test holds bucket
        # 0's turn until both wait for it, then lets go. Without the shared turn they would not
        # wait at all, and the second IDENTIFY would come within the window (op 9).
        await gate.execute("SELECT pg_advisory_lock(%s, 0)", (IDENTIFY_LOCK_CLASS,))

        async def both_waiting() -> bool:
            cursor = await gate.execute(_WAITERS, (IDENTIFY_LOCK_CLASS,))
            row = await cursor.fetchone()
            return row is not None and row[0] == 2

        async def open_gate() -> None:
            await wait_until(both_waiting, timeout_s=LIMIT_S, what="both processes to wait")
            await gate.execute("SELECT pg_advisory_unlock(%s, 0)", (IDENTIFY_LOCK_CLASS,))

        async def start(config: Path) -> BotProcess:
            started = bot_process(config, emulator, commands=("where",))
            return await stack.enter_async_context(started)

        async with asyncio.TaskGroup() as group:
            starting = [group.create_task(start(c)) for c in (config_a, config_b)]
            group.create_task(open_gate())
        a, b = (task.result() for task in starting)
        # nextcord reports ready after its first shard's READY: wait for both shards.
        await emulator.wait_until_shards_connected(0, 1, timeout_s=LIMIT_S)
        for process in (a, b):
            await process.wait_until(lambda p=process: p.stderr_has("ready as"), what="ready")

        [times] = emulator.identify_times.values()
        assert len(times) == 2
        assert times[1] - times[0] >= WINDOW_S
        assert emulator.identify_refusals == []  # nobody identified too early

        # Each guild's command reaches the process holding its shard, and only that one.
        handles = [
            await emulator.trigger_command("where", guild=guild.id, user="bob")
            for guild in (on_zero, on_one)
        ]
        told = [await workflow_id_told(handle) for handle in handles]  # bob got his answers
        expected = {
            config_a: {on_zero.id: (told[0], a.pid)},
            config_b: {on_one.id: (told[1], b.pid)},
        }
        assert {c: answered(c) for c in expected} == expected

        # A third process configured for shard 1, which b holds: one line, exit 2, b keeps it.
        config_c = write_config(tmp_path, "c", 1, emulator, postgres_dsn)
        async with BotProcess.running(
            sys.executable,
            str(PROJECT_ROOT / "bot.py"),
            "--config",
            str(config_c),
            cwd=PROJECT_ROOT,
            env=child_env(TEST_BOT_TOKEN=emulator.bot_token),
            token=emulator.bot_token,
        ) as c:
            assert await c.finish() == 2, c.output()
        errors = [line for line in c.stderr if line.startswith("error:")]
        assert errors == [
            "error: discord.shard_ids: Discord refused shard 1 of 2 (close code 4010, invalid "
            "shard): another gateway session holds it (two processes configured with the same "
            "shard?), or discord.shard_count differs from the other processes'\n"
        ], c.output()
        c.assert_clean()  # no traceback, no token
        [refusal] = emulator.identify_refusals
        assert (refusal.shard, refusal.close_code) == ((1, SHARDS), INVALID_SHARD)
        assert emulator.connected_shards == [0, 1]

        for process in (a, b):
            await process.stop()  # SIGTERM: exit 0, no traceback, no token in the output
