"""Where the bot may not post: forbidden channels, closed DMs, strangers."""

from __future__ import annotations

import asyncio

import nextcord
import pytest

from notifier.testing import DiscordEmulator


async def test_closed_dms_raise_forbidden_50007(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    alice_id = discord_emulator.users["alice"].id
    alice = await sample_bot.fetch_user(alice_id)
    await alice.send("your workflow finished")
    assert [m.content for m in discord_emulator.dm_messages("alice")] == ["your workflow finished"]

    discord_emulator.close_dms("alice")
    with pytest.raises(nextcord.Forbidden) as excinfo:
        await alice.send("this one bounces")
    assert excinfo.value.code == 50007
    assert len(discord_emulator.dm_messages("alice")) == 1


async def test_user_without_mutual_guild(discord_emulator: DiscordEmulator, sample_bot) -> None:
    stranger = discord_emulator.add_user("dave", in_guild=False)
    user = await sample_bot.fetch_user(stranger.id)
    with pytest.raises(nextcord.Forbidden) as excinfo:
        await user.send("hello stranger")
    assert excinfo.value.code == 50278


async def test_forbidden_channel_raises_50013_and_updates_cache(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    channel = sample_bot.get_channel(discord_emulator.results_channel_id)
    posted = await channel.send("allowed for now")
    updated = asyncio.ensure_future(sample_bot.wait_for("guild_channel_update", timeout=5))
    discord_emulator.forbid_channel("results")
    await updated
    assert not channel.permissions_for(channel.guild.me).send_messages

    with pytest.raises(nextcord.Forbidden) as excinfo:
        await channel.send("not allowed")
    assert excinfo.value.code == 50013
    with pytest.raises(nextcord.Forbidden):
        await posted.edit(content="edits are refused too")

    # Interaction responses are webhooks: channel permissions do not apply.
    handle = await discord_emulator.trigger_command("ping", channel="results")
    assert (await handle.wait_for_message()).content == "pong"

    discord_emulator.allow_channel("results")
    await channel.send("allowed again")


async def test_wrong_bot_token_is_unauthorized(discord_emulator: DiscordEmulator) -> None:
    client = nextcord.Client(intents=nextcord.Intents.none())
    try:
        with pytest.raises(nextcord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()
    record = discord_emulator.requests[-1]
    assert record.status == 401 and record.auth == "invalid"
    assert record.response == {"message": "401: Unauthorized", "code": 0}
