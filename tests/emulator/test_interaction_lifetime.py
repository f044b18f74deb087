"""Deadlines and token lifetime of interactions, and the closed-session pitfall."""

from __future__ import annotations

import asyncio

import nextcord
import pytest
from nextcord.webhook.async_ import async_context

from notifier.discord.compat import (
    connection_state,
    interaction_session,
    live_session,
    recreate_session,
)
from notifier.testing import DiscordEmulator


async def _held(bot) -> nextcord.Interaction:
    return await asyncio.wait_for(bot.held.get(), 5)


async def test_defer_followup_then_token_expires(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    handle = await discord_emulator.trigger_command("work", {"steps": 2})
    message = await handle.wait_for_message(lambda m: m.content == "done 2")
    assert handle.deferred and handle.response_type == 5
    # The first followup after a defer replaces the "thinking" placeholder.
    assert handle.original is message and handle.followups == []
    assert message.history[0].flags & 128 and message.edited_at is None

    interaction = sample_bot.work_interactions[-1]
    discord_emulator.advance_time(discord_emulator.config.interaction_ttl_s + 0.1)
    assert handle.expired
    with pytest.raises(nextcord.HTTPException) as excinfo:
        await interaction.followup.send("too late")
    assert excinfo.value.status == 401 and excinfo.value.code == 50027
    with pytest.raises(nextcord.HTTPException) as excinfo:
        await interaction.edit_original_message(content="too late")
    assert excinfo.value.code == 50027

    channel = sample_bot.get_channel(discord_emulator.channel_id)
    fallback = await channel.send("result delivered with the bot token")
    stored = discord_emulator.message(fallback.id)
    assert stored.content == "result delivered with the bot token"
    assert [
        r.auth for r in discord_emulator.requests_to("POST", "/channels/{channel_id}/messages")
    ] == ["bot"]


async def test_second_followup_is_a_new_message(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    handle = await discord_emulator.trigger_command("hold")
    interaction = await _held(sample_bot)
    await interaction.response.defer(ephemeral=True)
    first = await interaction.followup.send("first", wait=True)
    second = await interaction.followup.send("second", wait=True, ephemeral=False)
    assert first.id == handle.original.id
    assert [m.content for m in handle.messages] == ["first", "second"]
    assert handle.original.ephemeral and not handle.followups[0].ephemeral
    assert second.id == handle.followups[0].id


async def test_late_initial_response_is_unknown_interaction(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    handle = await discord_emulator.trigger_command("hold")
    interaction = await _held(sample_bot)
    discord_emulator.advance_time(discord_emulator.config.initial_response_deadline_s + 0.1)
    with pytest.raises(nextcord.NotFound) as excinfo:
        await interaction.response.defer()
    assert excinfo.value.code == 10062
    assert not handle.acknowledged


async def test_second_acknowledgement_is_rejected(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    handle = await discord_emulator.trigger_command("hold")
    interaction = await _held(sample_bot)
    await interaction.response.send_message("first answer")
    adapter = async_context.get()
    with pytest.raises(nextcord.HTTPException) as excinfo:
        # nextcord refuses locally (InteractionResponded); go through its adapter.
        await adapter.create_interaction_response(
            interaction.id, interaction.token, session=interaction_session(interaction), type=5
        )
    assert excinfo.value.status == 400 and excinfo.value.code == 40060
    assert handle.response_type == 4


async def test_followup_before_acknowledgement_is_unknown_webhook(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    await discord_emulator.trigger_command("hold")
    interaction = await _held(sample_bot)
    with pytest.raises(nextcord.NotFound) as excinfo:
        await interaction.followup.send("no initial response yet")
    assert excinfo.value.code == 10015


async def test_expire_and_advance_time_without_waiting(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    discord_emulator.config.interaction_ttl_s = 900.0
    handle = await discord_emulator.trigger_command("hold")
    interaction = await _held(sample_bot)
    await interaction.response.defer()
    discord_emulator.advance_time(899.0)
    await interaction.edit_original_message(content="still valid at 14:59")
    handle.expire()
    with pytest.raises(nextcord.HTTPException) as excinfo:
        await interaction.edit_original_message(content="15 minutes later")
    assert excinfo.value.code == 50027
    assert handle.original.content == "still valid at 14:59"


async def test_closed_session_pitfall_and_rebuilt_webhook(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    handle = await discord_emulator.trigger_command("hold")
    interaction = await _held(sample_bot)
    await interaction.response.defer()
    cached_followup = interaction.followup

    await live_session(sample_bot).close()
    await recreate_session(sample_bot)

    with pytest.raises(RuntimeError, match="Session is closed"):
        await interaction.edit_original_message(content="via the dead session")
    with pytest.raises(RuntimeError, match="Session is closed"):
        await cached_followup.send("via the dead session")

    webhook = nextcord.Webhook.from_state(
        data={"id": discord_emulator.application_id, "type": 3, "token": interaction.token},
        state=connection_state(sample_bot),
    )
    sent = await webhook.send("delivered on the live session", wait=True)
    await webhook.edit_message("@original", content="edited on the live session")
    original = await handle.wait_for_original(lambda m: m.content.startswith("edited"))
    assert sent.id == original.id
    assert [v.content for v in original.versions] == [
        "",
        "delivered on the live session",
        "edited on the live session",
    ]


async def test_user_deleted_original_then_edit_is_unknown_message(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    handle = await discord_emulator.trigger_command("hold")
    interaction = await _held(sample_bot)
    await interaction.response.send_message("will be deleted")
    discord_emulator.delete_message(handle)
    assert handle.original.deleted
    with pytest.raises(nextcord.NotFound) as excinfo:
        await interaction.edit_original_message(content="edit after delete")
    assert excinfo.value.code == 10008
