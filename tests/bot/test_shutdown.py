"""bot.py as a real process: SIGTERM interrupts workflows and tells their users; results stored
but not yet delivered go out on the next start."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import yaml

from notifier.config import StorageSettings
from notifier.records import DeliveryState, WorkflowRecord, WorkflowStatus, new_workflow_id
from notifier.store import ResultQuery, ResultStore
from notifier.testing import DiscordEmulator
from notifier.testing.site import DemoSite

from .support import text_of

ROOT = Path(__file__).resolve().parents[2]


def write_config(emulator: DiscordEmulator, tmp_path: Path) -> Path:
    config = {
        "discord": {
            "token": "${TEST_BOT_TOKEN}",
            "api_base": emulator.api_base,
            "interaction_ttl": 900,
        },
        "storage": {"path": str(tmp_path / "data")},
        "progress": {"min_interval": 0.2},
        "autointel": {"allow_private_networks": True, "page_delay": 0.5},
        "fanout": {"plugin_dirs": [str(ROOT / "plugins")]},
        "runner": {"shutdown_grace": 5},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@asynccontextmanager
async def bot_process(
    emulator: DiscordEmulator, config: Path, stderr_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "TEST_BOT_TOKEN": emulator.bot_token}
    with stderr_path.open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bot.py"),
            "--config",
            str(config),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def wait_ready(emulator: DiscordEmulator, ready_before: int) -> None:
    await emulator.wait_until_ready_count(ready_before + 1)
    await emulator.wait_for_commands("autointel", "retrieve_results")


async def open_store(tmp_path: Path) -> ResultStore:
    return await ResultStore.open(StorageSettings(path=tmp_path / "data"))


async def test_sigterm_interrupts_running_workflows_and_tells_their_users(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    config = write_config(emulator, tmp_path)
    stderr_path = tmp_path / "bot.stderr"
    async with DemoSite(pages=12) as site, bot_process(emulator, config, stderr_path) as proc:
        await wait_ready(emulator, emulator.ready_count)
        handle = await emulator.trigger_command(
            "autointel", {"url": site.url, "depth": "deep"}, user="alice"
        )
        await handle.wait_for_message(lambda m: "crawling" in text_of(m), timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        told = [m for m in handle.messages if "was interrupted" in text_of(m)]
        assert told, [text_of(m) for m in handle.messages]
    errors = stderr_path.read_text()
    assert "Traceback" not in errors
    store = await open_store(tmp_path)
    try:
        (record,) = await store.search(ResultQuery())
        assert record.status is WorkflowStatus.INTERRUPTED
        document = await store.read_result(record.workflow_id)
        assert document["result"]["last_stage"] in {"crawling", "analysing", "fetching"}
    finally:
        await store.close()


async def test_a_stored_but_undelivered_result_is_delivered_on_the_next_start(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    config = write_config(emulator, tmp_path)
    alice = emulator.users["alice"].id
    store = await open_store(tmp_path)
    workflow_id = new_workflow_id()
    await store.create(
        WorkflowRecord(
            workflow_id=workflow_id,
            command="autointel",
            user_id=alice,
            user_name="alice",
            options={"url": "http://example.org/", "depth": "quick"},
            guild_id=emulator.guild_id,
            channel_id=emulator.channel_id,
            created_at=time.time() - 60,
        )
    )
    # The process that ran it died right after persisting, before any delivery.
    await store.finish(
        workflow_id,
        status=WorkflowStatus.COMPLETED,
        result={"title": "Finished before the crash", "summary": "kept safe in the store"},
    )
    await store.close()

    stderr_path = tmp_path / "bot.stderr"
    async with bot_process(emulator, config, stderr_path) as proc:
        await wait_ready(emulator, emulator.ready_count)
        message = await emulator.wait_for_channel_message(
            predicate=lambda m: "Finished before the crash" in text_of(m), timeout_s=30
        )
        assert f"<@{alice}>" in message.content
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert "Traceback" not in stderr_path.read_text()
    store = await open_store(tmp_path)
    try:
        record = await store.get(workflow_id)
        assert record is not None
        assert record.delivery_state is DeliveryState.DELIVERED
        assert record.delivered_via == "channel"
    finally:
        await store.close()
