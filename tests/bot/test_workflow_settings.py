"""Per-workflow operator settings (`workflows.<name>` in config.yaml) with the real bot against
the emulator: a workflow's own `max_per_user`, its `estimate_s` map driving the timeout warning,
and `results_channel_id` taking the hand-off's destination and the late result (one channel, or
per guild), never for a private run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from notifier.app import NotifierBot
from notifier.config import StorageSettings
from notifier.fanout.outbox import OutboxStatus
from notifier.records import DeliveryState
from notifier.store import ResultQuery, ResultStore
from notifier.testing import DiscordEmulator, HttpSink, text_of, wait_until
from notifier.testing.model import Message
from notifier.testing.project_bot import (
    SteeredWorkflow,
    new_record,
    project_bot,
    settled_record,
    stored_workflow,
)

TTL = pytest.mark.discord_emulator(interaction_ttl_s=4.0)


def _started_or_refused(message: Message) -> bool:
    return "❌" in message.content or "Workflow id" in text_of(message)


@pytest.mark.notifier_config(
    {"runner": {"max_per_user": 5}, "workflows": {"autointel": {"max_per_user": 2}}}
)
async def test_a_workflows_own_limit_refuses_the_third_run_even_when_commands_arrive_together(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    handles = await asyncio.gather(
        *(
            emulator.trigger_command("autointel", {"url": f"http://x/{i}"}, user="alice")
            for i in range(5)
        )
    )
    answers = [
        await handle.wait_for_message(_started_or_refused, timeout_s=15) for handle in handles
    ]
    refused = [a for a in answers if "❌" in a.content]
    assert len(refused) == 3, [text_of(a)[:80] for a in answers]
    for refusal in refused:
        assert refusal.ephemeral
        # Which limit, and for which workflow (not the runner-wide "3 workflows running").
        assert "You already have 2 /autointel runs going" in refusal.content
        assert "the most /autointel allows per user" in refusal.content
    assert bot.runner.running_for(emulator.users["alice"].id, "autointel") == 2
    # Per user: bob still may.
    other = await emulator.trigger_command("autointel", {"url": "http://y/"}, user="bob")
    assert "Workflow id" in text_of(await other.wait_for_message(_started_or_refused, timeout_s=10))
    steered.release.set()
    await wait_until(lambda: bot.runner.running_for(emulator.users["alice"].id) == 0)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as running:
        yield running


async def test_the_workflows_estimate_map_drives_the_timeout_warning(
    emulator: DiscordEmulator, tmp_path: Path, sink: HttpSink
) -> None:
    overrides: dict[str, Any] = {
        # The older table says "short" for deep: workflows.autointel.estimate_s takes precedence.
        "warnings": {"threshold": 600, "default_estimates": {"autointel": {"deep": 60}}},
        "workflows": {"autointel": {"estimate_s": {"deep": 1200, "quick": 5}}},
        "notifiers": [
            {
                "name": "long-run",
                "plugin": "timeout_warning",
                "on": ["started"],
                "options": {"threshold_s": 600, "urls": [sink.json_url("/warn")]},
            }
        ],
    }
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        steered = SteeredWorkflow()
        steered.install(bot)
        steered.release.set()
        deep = await emulator.trigger_command(
            "autointel", {"url": "http://x/", "depth": "deep"}, user="alice"
        )
        warning = await deep.wait_for_message(lambda m: "Long workflow" in text_of(m), timeout_s=10)
        assert warning.ephemeral
        assert "about 20m 00s" in text_of(warning)  # 1200 s, from the map's "deep"
        deep_record = await new_record(bot)
        await settled_record(bot, deep_record.workflow_id)

        quick = await emulator.trigger_command(
            "autointel", {"url": "http://x/", "depth": "quick"}, user="bob"
        )
        await quick.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=10)
        assert not [m for m in quick.messages if "Long workflow" in text_of(m)]

        # The operators' timeout_warning notifier heard the same estimate.
        async def settled() -> bool:
            rows = await bot.fanout.outbox.rows(notifier="long-run", limit=None)
            return len(rows) == 2 and all(r.status is not OutboxStatus.PENDING for r in rows)

        await wait_until(settled, timeout_s=30)
        rows = await bot.fanout.outbox.rows(notifier="long-run", limit=None)
    by_id = {row.workflow_id: row for row in rows}
    assert by_id[deep_record.workflow_id].status is OutboxStatus.SENT
    assert by_id[deep_record.workflow_id].notice.estimate_s == 1200.0
    (posted,) = sink.bodies()
    assert "20m 00s" in posted["message"]


def _channel_posts(emulator: DiscordEmulator, channel: int, workflow_id: str) -> list[Message]:
    """Bot-token messages in `channel` about the workflow (not interaction responses)."""
    return [
        m
        for m in emulator.channel_messages(channel)
        if m.interaction_id is None and m.webhook_id is None and workflow_id in text_of(m)
    ]


@TTL
@pytest.mark.parametrize("form", ["one channel", "per guild", "another guild's map"])
async def test_the_hand_off_and_the_late_result_go_to_the_workflows_results_channel(
    emulator: DiscordEmulator, tmp_path: Path, form: str
) -> None:
    results, general = emulator.results_channel_id, emulator.channel_id
    configured, expected = {
        "one channel": (results, results),
        "per guild": ({emulator.guild_id: results}, results),
        # The command's guild is not in the map: the command's channel, as without the setting.
        "another guild's map": ({emulator.guild_id + 1: results}, general),
    }[form]
    settings = {"results_channel_id": configured, "estimate_s": 1200}
    overrides = {"workflows": {"autointel": settings}}
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        steered = SteeredWorkflow()
        steered.install(bot)
        handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
        await steered.started.wait()
        # The warning at start already says where the workflow will continue.
        warning = await handle.wait_for_message(
            lambda m: "Long workflow" in text_of(m), timeout_s=10
        )
        route = "in this channel" if expected == general else f"in <#{expected}>"
        assert f"keep you posted {route} (or by DM)" in text_of(warning)
        handoff = await handle.wait_for_message(
            lambda m: "Still working" in m.content, timeout_s=10
        )
        assert f"continue in <#{expected}>" in handoff.content
        record = await new_record(bot)
        # Progress after the hand-off: a status message in that channel (bot token).
        assert steered.report is not None
        steered.report(stage="later", progress=0.5)
        await emulator.wait_for_channel_message(
            expected,
            lambda m: m.interaction_id is None and record.workflow_id in text_of(m),
            timeout_s=10,
        )
        steered.release.set()
        result = await emulator.wait_for_channel_message(
            expected,
            lambda m: "Steered result" in text_of(m) and m.interaction_id is None,
            timeout_s=10,
        )
        assert f"<@{emulator.users['alice'].id}>" in result.content
        settled = await settled_record(bot, record.workflow_id)
    assert settled.delivered_via == "channel"
    elsewhere = general if expected == results else results
    assert _channel_posts(emulator, elsewhere, record.workflow_id) == []
    assert settled.channel_id == general  # the record still says where the command was used


@TTL
async def test_a_private_run_never_goes_to_the_results_channel(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    results = emulator.results_channel_id
    overrides = {"workflows": {"autointel": {"results_channel_id": results}}}
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        steered = SteeredWorkflow()
        steered.install(bot)
        handle = await emulator.trigger_command(
            "autointel", {"url": "http://x/", "private": True}, user="alice"
        )
        await steered.started.wait()
        handoff = await handle.wait_for_message(
            lambda m: "Still working" in m.content, timeout_s=10
        )
        assert handoff.ephemeral
        assert "by DM" in handoff.content
        assert f"<#{results}>" not in handoff.content
        steered.release.set()
        await emulator.wait_for_dm("alice", lambda m: "Steered result" in text_of(m), timeout_s=15)
        (record,) = await bot.store.search(ResultQuery())
        await settled_record(bot, record.workflow_id)
    in_results = [m for m in emulator.channel_messages(results) if not m.deleted]
    assert in_results == []


async def test_a_result_delivered_after_a_restart_goes_to_the_results_channel(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    """A late result with no interaction left (stored, then the process died) takes the same
    channel as one delivered by the process that ran it."""
    store = await ResultStore.open(StorageSettings(path=tmp_path / "data"))
    workflow_id = await stored_workflow(
        store,
        emulator,
        result={"title": "Finished before the crash", "summary": "kept"},
        delivered_via=None,
        created_at=time.time() - 60,
    )
    await store.close()
    results = emulator.results_channel_id
    overrides = {"workflows": {"autointel": {"results_channel_id": {emulator.guild_id: results}}}}
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        message = await emulator.wait_for_channel_message(
            results, lambda m: "Finished before the crash" in text_of(m), timeout_s=15
        )
        assert f"<@{emulator.users['alice'].id}>" in message.content
        record = await settled_record(bot, workflow_id)
    assert record.delivery_state is DeliveryState.DELIVERED
    assert _channel_posts(emulator, emulator.channel_id, workflow_id) == []
