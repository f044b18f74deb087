"""Injected faults: 5xx (retried or surfaced), hangs and dropped connections."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import nextcord
import pytest

from notifier.testing import DiscordEmulator

MESSAGES = "/channels/{channel_id}/messages"


async def test_500_is_retried_by_nextcord(discord_emulator: DiscordEmulator, sample_bot) -> None:
    fault = discord_emulator.inject_fault("POST", "/channels/*/messages", "status", count=1)
    channel = sample_bot.get_channel(discord_emulator.channel_id)
    message = await channel.send("survives one 500")
    assert fault.hits == 1 and fault.remaining == 0
    assert [r.status for r in discord_emulator.requests_to("POST", MESSAGES)] == [500, 200]
    assert discord_emulator.message(message.id).content == "survives one 500"
    assert discord_emulator.stats.faults == 1


async def test_503_surfaces_as_discord_server_error(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    discord_emulator.inject_fault("POST", re.compile(r"^/channels/\d+/messages$"), status=503)
    channel = sample_bot.get_channel(discord_emulator.channel_id)
    with pytest.raises(nextcord.DiscordServerError) as excinfo:
        await channel.send("not retried")
    assert excinfo.value.status == 503
    assert discord_emulator.channel_messages() == []


async def test_dropped_connection_reaches_the_caller(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    discord_emulator.inject_fault("POST", "/channels/*/messages", "drop")
    channel = sample_bot.get_channel(discord_emulator.channel_id)
    with pytest.raises(aiohttp.ClientError):
        await channel.send("lost on the wire")
    record = discord_emulator.requests_to("POST", MESSAGES)[0]
    assert record.fault == "drop" and record.status is None
    await channel.send("next one works")


async def test_hang_then_answer(discord_emulator: DiscordEmulator, sample_bot) -> None:
    discord_emulator.inject_fault("POST", "/channels/*/messages", "hang", delay_s=0.2)
    channel = sample_bot.get_channel(discord_emulator.channel_id)
    message = await channel.send("slow but delivered")
    assert discord_emulator.message(message.id).content == "slow but delivered"


async def test_hang_forever_needs_a_client_timeout(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    discord_emulator.inject_fault("*", "/webhooks/*", "hang", count=None)
    handle = await discord_emulator.trigger_command("hold")
    interaction = await asyncio.wait_for(sample_bot.held.get(), 5)
    await interaction.response.defer()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(interaction.edit_original_message(content="never"), 0.3)
    assert handle.original.loading
    discord_emulator.clear_faults()
    await interaction.edit_original_message(content="after the outage")
    assert handle.original.content == "after the outage"


async def test_fault_on_interaction_webhook_is_retried(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    discord_emulator.inject_fault("POST", "/webhooks/*/*", status=502)
    handle = await discord_emulator.trigger_command("work")
    message = await handle.wait_for_message()
    assert message.content == "done 1"
    statuses = [
        r.status
        for r in discord_emulator.requests
        if r.route == "/webhooks/{webhook_id}/{webhook_token}"
    ]
    assert statuses == [502, 200]
