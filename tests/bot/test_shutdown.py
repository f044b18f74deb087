"""bot.py as a real process: SIGTERM interrupts workflows without recorded steps and tells their
users, leaves a crawl with recorded pages running to resume on the next start; results stored but
not yet delivered go out on the next start."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import yaml
from yarl import URL

from notifier.config import StorageSettings
from notifier.records import DeliveryState, WorkflowStatus
from notifier.store import ResultQuery, ResultStore
from notifier.testing import DiscordEmulator, bot_process, every_message, text_of
from notifier.testing.project_bot import stored_workflow
from notifier.testing.site import DemoSite

ROOT = Path(__file__).resolve().parents[2]

# A workflow that records no step: a shutdown interrupts it.
SLOW_WORKFLOW = """
import asyncio

from notifier import Context, workflow


@workflow(description="Works slowly, recording nothing")
async def slow(ctx: Context) -> dict:
    ctx.progress(stage="crawling", fraction=0.1, detail="working")
    await asyncio.sleep(3600)
    return {}
"""


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
        "workflows": {"dirs": [str(tmp_path / "workflows")]},
    }
    (tmp_path / "workflows").mkdir(exist_ok=True)
    (tmp_path / "workflows" / "slow.py").write_text(SLOW_WORKFLOW)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def open_store(tmp_path: Path) -> ResultStore:
    return await ResultStore.open(StorageSettings(path=tmp_path / "data"))


async def test_sigterm_interrupts_a_workflow_without_steps_and_tells_its_user(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    config = write_config(emulator, tmp_path)
    async with bot_process(config, emulator, commands=("slow",)) as bot:
        handle = await emulator.trigger_command("slow", user="alice")
        await handle.wait_for_message(lambda m: "crawling" in text_of(m), timeout_s=30)
        await bot.stop()  # SIGTERM: exit 0, no traceback, no token in the output
        told = [m for m in handle.messages if "was interrupted" in text_of(m)]
        assert told, [text_of(m) for m in handle.messages]
    store = await open_store(tmp_path)
    try:
        (record,) = await store.search(ResultQuery())
        assert record.status is WorkflowStatus.INTERRUPTED
        document = await store.read_result(record.workflow_id)
        assert document["result"]["last_stage"] == "crawling"
    finally:
        await store.close()


async def test_sigterm_leaves_a_crawl_with_recorded_pages_to_resume_on_the_next_start(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    config = write_config(emulator, tmp_path)
    grace_s = 5.0
    async with DemoSite(pages=12) as site:
        async with bot_process(config, emulator) as bot:
            handle = await emulator.trigger_command(
                "autointel", {"url": site.url, "depth": "deep"}, user="alice"
            )
            await handle.wait_for_message(lambda m: "page 3 of" in text_of(m), timeout_s=30)
            bot.send(signal.SIGTERM)
            assert await bot.finish(limit_s=grace_s + 5) == 0, bot.output()[-3000:]
            bot.assert_clean()
        store = await open_store(tmp_path)
        try:
            (record,) = await store.search(ResultQuery())
            steps = await store.steps(record.workflow_id)
        finally:
            await store.close()
        assert record.status is WorkflowStatus.RUNNING  # not interrupted: it resumes
        assert len(steps) >= 2
        fetched_before = Counter(site.hits)

        async with bot_process(config, emulator) as bot:
            await emulator.wait_for_channel_message(
                predicate=lambda m: (
                    "Resilience Handbook" in text_of(m)
                    and record.workflow_id in text_of(m)
                    and "resumed" not in text_of(m)
                ),
                timeout_s=60,
            )
            await bot.stop()
    hits = Counter(site.hits)
    recorded_paths = {_path(step.value["url"]) for step in steps}
    assert all(hits[path] == fetched_before[path] == 1 for path in recorded_paths), hits
    everything = [text_of(m) for m in every_message(emulator)]
    assert not [t for t in everything if "was interrupted" in t]
    resumed = [t for t in everything if "resumed after a restart" in t]
    assert len(resumed) == 1, resumed
    store = await open_store(tmp_path)
    try:
        done = await store.get(record.workflow_id)
        assert done is not None and done.status is WorkflowStatus.COMPLETED
        assert done.resumes == 1
        document = await store.read_result(record.workflow_id)
        assert document["result"]["pages_analysed"] == 12
    finally:
        await store.close()


def _path(url: str) -> str:
    return URL(url).path


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
