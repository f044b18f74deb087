"""Gateway disruptions: the bot reconnects and later interactions still work."""

from __future__ import annotations

import pytest

from notifier.testing import DiscordEmulator


async def test_drop_gateway_resumes(discord_emulator: DiscordEmulator, sample_bot) -> None:
    assert await discord_emulator.drop_gateway(code=4000) == 1
    await discord_emulator.wait_until_resume_count(1)
    assert discord_emulator.identify_count == 1
    last = discord_emulator.gateway_connections[-1]
    assert last.mode == "resume" and last.path == "/resume-gateway"

    handle = await discord_emulator.trigger_command("ping")
    assert (await handle.wait_for_message()).content == "pong"


async def test_events_during_outage_are_replayed(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    discord_emulator.config.initial_response_deadline_s = 3.0
    await discord_emulator.drop_gateway(abrupt=True)
    handle = await discord_emulator.trigger_command("ping")  # buffered while disconnected
    await discord_emulator.wait_until_resume_count(1)
    assert (await handle.wait_for_message()).content == "pong"


async def test_reconnect_request_and_heartbeats(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    await discord_emulator.request_gateway_reconnect()
    await discord_emulator.wait_until_resume_count(1)
    handle = await discord_emulator.trigger_command("work", {"steps": 3})
    assert (await handle.wait_for_message()).content == "done 3"
    assert discord_emulator.gateway_connections[0].heartbeats >= 1


async def test_clean_client_close_ends_the_session(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    await sample_bot.close()
    await discord_emulator.wait_until_disconnected()
    assert discord_emulator.gateway_connections[-1].close_code == 1000
    with pytest.raises(RuntimeError, match="no bot is connected"):
        await discord_emulator.trigger_command("ping")


async def test_invalid_session_forces_a_new_identify(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    ping_id = discord_emulator.command_named("ping").id
    await discord_emulator.invalidate_gateway_session(resumable=False)
    # nextcord sleeps 5 s before any non-initial IDENTIFY.
    await discord_emulator.wait_until_ready_count(2, timeout_s=15)
    assert discord_emulator.identify_count == 2
    handle = await discord_emulator.trigger_command("ping")
    assert (await handle.wait_for_message(timeout_s=10)).content == "pong"
    assert discord_emulator.command_named("ping").id == ping_id
