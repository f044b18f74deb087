"""The delivery ladder against the real bot and the emulator, with a token TTL of a few seconds."""

from __future__ import annotations

import pytest

from notifier.app import NotifierBot
from notifier.discord.compat import live_session
from notifier.records import DeliveryState, WorkflowStatus
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, text_of, wait_until
from notifier.testing.project_bot import SteeredWorkflow

TTL = pytest.mark.discord_emulator(interaction_ttl_s=4.0)


async def _only_record(bot: NotifierBot):  # type: ignore[no-untyped-def]
    records = await bot.store.search(ResultQuery())
    assert len(records) == 1
    return records[0]


def _expired_token_calls(emulator: DiscordEmulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in emulator.requests if r.error_code == 50027]


@TTL
async def test_a_workflow_outlasting_the_ttl_hands_off_and_delivers_in_the_channel(
    emulator: DiscordEmulator, bot: NotifierBot, captured_logs: list[str]
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    handoff = await handle.wait_for_message(lambda m: "Still working" in m.content, timeout_s=10)
    assert not handle.expired, "the hand-off must be posted while the token still works"
    assert f"<#{emulator.channel_id}>" in handoff.content
    # The token dies now (the bot's lease already gave it up at the hand-off): anything that
    # still used it would be refused with 50027, counted below.
    handle.expire()
    assert handle.expired
    steered.release.set()
    result = await emulator.wait_for_channel_message(
        predicate=lambda m: "Steered result" in text_of(m) and m.interaction_id is None,
        timeout_s=10,
    )
    assert f"<@{emulator.users['alice'].id}>" in result.content
    record = await _only_record(bot)

    async def delivered_via() -> str | None:
        stored = await bot.store.get(record.workflow_id)
        return stored.delivered_via if stored is not None else None

    # The message is posted before the delivery is marked in the store, so wait for the mark.
    await wait_until(delivered_via, what="the delivery mark")
    stored = await bot.store.get(record.workflow_id)
    assert stored is not None
    assert stored.status is WorkflowStatus.COMPLETED
    assert stored.delivered_via == "channel"
    assert _expired_token_calls(emulator) == []
    assert not [line for line in captured_logs if "Traceback" in line]


@TTL
async def test_an_ephemeral_workflow_never_shows_in_the_channel_and_arrives_by_dm(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    handle = await emulator.trigger_command(
        "autointel", {"url": "http://x/", "private": True}, user="alice"
    )
    await steered.started.wait()
    handoff = await handle.wait_for_message(lambda m: "Still working" in m.content, timeout_s=10)
    assert handoff.ephemeral
    assert "by DM" in handoff.content
    steered.release.set()
    dm = await emulator.wait_for_dm("alice", lambda m: "Steered result" in text_of(m), timeout_s=15)
    record = await _only_record(bot)
    assert record.workflow_id in text_of(dm)
    public = [
        m
        for m in emulator.channel_messages()
        if not m.ephemeral and record.workflow_id in text_of(m)
    ]
    assert public == []
    assert handle.ephemeral
    assert _expired_token_calls(emulator) == []


async def test_a_closed_http_session_mid_workflow_loses_nothing(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    await handle.wait_for_message(lambda m: "working" in text_of(m), timeout_s=10)
    # The seed's failure: the client's aiohttp session closes (a restart of the client), and the
    # gateway drops. Calls through the old Interaction would now raise "Session is closed".
    await live_session(bot).close()
    await emulator.drop_gateway()
    steered.release.set()
    result = await handle.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=15)
    assert result is not None
    record = await _only_record(bot)
    await wait_until(lambda: _delivered(bot, record.workflow_id))
    # nextcord's own reconnect dies on the closed session; the bot restarts it on a fresh one.
    await wait_until(lambda: emulator.identify_count + emulator.resume_count >= 2)
    await wait_until(bot.is_ready)
    again = await emulator.trigger_command(
        "workflow", {"workflow_id": record.workflow_id}, subcommand="status", user="alice"
    )
    status = await again.wait_for_message(timeout_s=10)
    assert "completed" in text_of(status)


async def _delivered(bot: NotifierBot, workflow_id: str) -> bool:
    record = await bot.store.get(workflow_id)
    return record is not None and record.delivery_state is DeliveryState.DELIVERED


@pytest.mark.parametrize("stage", ["start", "progress", "final", "error"])
async def test_token_expiry_at_each_stage(
    emulator: DiscordEmulator, bot: NotifierBot, captured_logs: list[str], stage: str
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    if stage == "error":
        steered.fail_with = "the site went away"
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    if stage == "start":
        await handle.wait_for_response()
        handle.expire()  # Discord kills the token before the bot's first edit
    await steered.started.wait()
    if stage == "progress":
        handle.expire()
        assert steered.report is not None
        steered.report(stage="later", progress=0.5)
        await emulator.wait_for_channel_message(
            predicate=lambda m: m.interaction_id is None and "later" in text_of(m), timeout_s=10
        )
    if stage in ("final", "error"):
        handle.expire()
    steered.release.set()
    expected = "the site went away" if stage == "error" else "Steered result"
    message = await emulator.wait_for_channel_message(
        predicate=lambda m: m.interaction_id is None and expected in text_of(m), timeout_s=15
    )
    assert f"<@{emulator.users['alice'].id}>" in message.content
    record = await _only_record(bot)
    document = await bot.store.read_result(record.workflow_id)
    assert document["workflow_id"] == record.workflow_id
    assert document["result"] is not None
    # The dead token was used at most once: the call that discovered it.
    assert len(_expired_token_calls(emulator)) <= 1
    assert not [line for line in captured_logs if "Traceback" in line]
