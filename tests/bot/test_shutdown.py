"""bot.py as a real process: SIGTERM interrupts workflows and tells their users; results stored
but not yet delivered go out on the next start."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from notifier.config import StorageSettings
from notifier.records import DeliveryState, WorkflowStatus
from notifier.store import ResultQuery, ResultStore
from notifier.testing import DiscordEmulator, bot_process, text_of
from notifier.testing.project_bot import stored_workflow
from notifier.testing.site import DemoSite

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


async def open_store(tmp_path: Path) -> ResultStore:
    return await ResultStore.open(StorageSettings(path=tmp_path / "data"))


async def test_sigterm_interrupts_running_workflows_and_tells_their_users(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    config = write_config(emulator, tmp_path)
    async with DemoSite(pages=12) as site, bot_process(config, emulator) as bot:
        handle = await emulator.trigger_command(
            "autointel", {"url": site.url, "depth": "deep"}, user="alice"
        )
        await handle.wait_for_message(lambda m: "crawling" in text_of(m), timeout_s=30)
        await bot.stop()  # SIGTERM: exit 0, no traceback, no token in the output
        told = [m for m in handle.messages if "was interrupted" in text_of(m)]
        assert told, [text_of(m) for m in handle.messages]
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
    # The process that ran it died right after persisting, before any delivery.
    workflow_id = await stored_workflow(
        store,
        emulator,
        result={"title": "Finished before the crash", "summary": "kept safe in the store"},
        delivered_via=None,
        url="http://example.org/",
        created_at=time.time() - 60,
    )
    await store.close()

    async with bot_process(config, emulator) as bot:
        message = await emulator.wait_for_channel_message(
            predicate=lambda m: "Finished before the crash" in text_of(m), timeout_s=30
        )
        assert f"<@{alice}>" in message.content
        await bot.stop()
    store = await open_store(tmp_path)
    try:
        record = await store.get(workflow_id)
        assert record is not None
        assert record.delivery_state is DeliveryState.DELIVERED
        assert record.delivered_via == "channel"
    finally:
        await store.close()
