"""The real nextcord client connects, becomes ready and registers its commands."""

from __future__ import annotations

import nextcord
import pytest
from nextcord.ext import commands

from notifier.testing import DiscordEmulator, connect_client


async def test_client_connects_and_registers_commands(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    assert discord_emulator.identify_count == 1
    assert sample_bot.user.id == discord_emulator.bot_user_id
    guild = sample_bot.get_guild(discord_emulator.guild_id)
    assert guild is not None
    assert {c.name for c in guild.text_channels} == {"general", "results"}
    names = {c.name for c in discord_emulator.commands}
    assert {"ping", "work", "hold", "workflow", "pages"} <= names
    workflow = discord_emulator.command_named("workflow")
    assert workflow is not None and workflow.guild_id == discord_emulator.guild_id
    ping = discord_emulator.command_named("ping")
    assert ping is not None and ping.guild_id is None


async def test_slash_command_round_trip(discord_emulator: DiscordEmulator, sample_bot) -> None:
    handle = await discord_emulator.trigger_command("ping")
    message = await handle.wait_for_message()
    assert message.content == "pong"
    assert handle.response_type == 4
    assert not handle.ephemeral


async def test_subcommand_and_autocomplete(discord_emulator: DiscordEmulator, sample_bot) -> None:
    choices = await discord_emulator.trigger_autocomplete(
        "workflow", {"run": "run"}, focused="run", subcommand="status"
    )
    assert [c["value"] for c in choices] == ["run-1", "run-2"]

    handle = await discord_emulator.trigger_command(
        "workflow", {"run": "run-2"}, subcommand="status", user="bob"
    )
    message = await handle.wait_for_message()
    assert message.content == "status of run-2"
    assert handle.ephemeral and message.ephemeral
    payload = handle.record.payload
    assert payload["member"]["user"]["id"] == str(discord_emulator.users["bob"].id)
    assert payload["attachment_size_limit"] == discord_emulator.config.attachment_size_limit
    assert payload["entitlements"] == [] and payload["context"] == 0


async def test_button_click_updates_message(discord_emulator: DiscordEmulator, sample_bot) -> None:
    handle = await discord_emulator.trigger_command("pages")
    message = await handle.wait_for_message()
    assert message.content == "page 1"

    click = await discord_emulator.click_button(message, "pager:next", user="carol")
    assert await click.wait_for_response() == 7
    await click.wait_for_original(lambda m: m.content == "page 2")
    assert [v.content for v in message.versions] == ["page 1", "page 2"]


async def test_command_in_dm(discord_emulator: DiscordEmulator, sample_bot) -> None:
    handle = await discord_emulator.trigger_command("ping", dm=True, user="carol")
    message = await handle.wait_for_message()
    assert message.content == "pong"
    assert discord_emulator.dm_messages("carol") == [message]
    assert "user" in handle.record.payload and "member" not in handle.record.payload


async def test_unknown_options_are_rejected_before_dispatch(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    with pytest.raises(ValueError, match="no option"):
        await discord_emulator.trigger_command("work", {"stepz": 1})
    with pytest.raises(ValueError, match="subcommand"):
        await discord_emulator.trigger_command("workflow", {"run": "x"})
    with pytest.raises(LookupError):
        await discord_emulator.trigger_command("nope")


async def test_modal_submission(discord_emulator: DiscordEmulator, sample_bot) -> None:
    handle = await discord_emulator.trigger_command("feedback", user="bob")
    assert await handle.wait_for_response() == 9
    assert handle.modal["custom_id"] == "feedback-modal"
    submitted = await discord_emulator.submit_modal(handle, {"comment": "works"})
    assert (await submitted.wait_for_message()).content == "thanks: works"


async def test_select_menu(discord_emulator: DiscordEmulator, sample_bot) -> None:
    handle = await discord_emulator.trigger_command("pick")
    message = await handle.wait_for_message()
    chosen = await discord_emulator.select_menu(message, "pick:menu", ["b"])
    await chosen.wait_for_original(lambda m: m.content == "picked b")
    assert message.components == []


async def test_bot_reads_channel_history(discord_emulator: DiscordEmulator, sample_bot) -> None:
    channel = sample_bot.get_channel(discord_emulator.channel_id)
    for index in range(3):
        await channel.send(f"line {index}")
    seen = await discord_emulator.wait_for_channel_message(
        predicate=lambda m: m.content == "line 2"
    )
    history = [m.content async for m in channel.history(limit=10)]
    assert history == ["line 2", "line 1", "line 0"]
    assert seen.author.id == discord_emulator.bot_user_id


async def test_commands_bot_with_all_intents(discord_emulator: DiscordEmulator) -> None:
    bot = commands.Bot(intents=nextcord.Intents.all(), guild_ready_timeout=0.05)

    @bot.slash_command(name="hello", description="Say hello", guild_ids=[discord_emulator.guild_id])
    async def hello(interaction: nextcord.Interaction) -> None:
        member = interaction.guild.get_member(interaction.user.id)
        await interaction.response.send_message(f"hello {member.display_name}")

    async with await connect_client(bot, discord_emulator):
        guild = bot.get_guild(discord_emulator.guild_id)
        assert guild.chunked and len(guild.members) == 4
        handle = await discord_emulator.trigger_command("hello", user="carol")
        assert (await handle.wait_for_message()).content == "hello Carol"
        info = await bot.application_info()
        assert info.id == discord_emulator.application_id
