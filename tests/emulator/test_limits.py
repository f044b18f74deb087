"""Discord's message limits, nonce deduplication and deleted messages."""

from __future__ import annotations

import asyncio
import io

import nextcord
import pytest

from notifier.discord.compat import Route
from notifier.testing import DiscordEmulator


def _general(bot, emulator: DiscordEmulator) -> nextcord.TextChannel:
    return bot.get_channel(emulator.channel_id)


async def test_content_over_2000_chars(discord_emulator: DiscordEmulator, sample_bot) -> None:
    with pytest.raises(nextcord.HTTPException) as excinfo:
        await _general(sample_bot, discord_emulator).send("x" * 2001)
    assert excinfo.value.status == 400 and excinfo.value.code == 50035
    assert discord_emulator.requests[-1].error_code == 50035
    await _general(sample_bot, discord_emulator).send("x" * 2000)


@pytest.mark.parametrize(
    ("embeds", "path"),
    [
        ([nextcord.Embed(title="t")] * 11, "embeds"),
        ([nextcord.Embed(title="t" * 257)], "embeds.0.title"),
        ([nextcord.Embed(description="d" * 4097)], "embeds.0.description"),
        ([nextcord.Embed().add_field(name="n", value="v" * 1025)], "embeds.0.fields.0.value"),
        ([nextcord.Embed().add_field(name="n", value="")], "embeds.0.fields.0.value"),
        ([nextcord.Embed().set_footer(text="f" * 2049)], "embeds.0.footer.text"),
        ([nextcord.Embed().set_author(name="a" * 257)], "embeds.0.author.name"),
        (
            [nextcord.Embed(description="d" * 4000), nextcord.Embed(description="e" * 2001)],
            "embeds",
        ),
    ],
)
async def test_embed_limits(
    discord_emulator: DiscordEmulator, sample_bot, embeds: list[nextcord.Embed], path: str
) -> None:
    with pytest.raises(nextcord.HTTPException) as excinfo:
        await _general(sample_bot, discord_emulator).send(embeds=embeds)
    assert excinfo.value.code == 50035
    assert f"In {path}:" in str(excinfo.value)
    node = discord_emulator.requests[-1].response["errors"]
    for key in path.split("."):
        node = node[key]
    assert node["_errors"]


def test_too_many_fields_is_reported_on_the_fields_array() -> None:
    from notifier.testing.limits import MessageLimits, message_errors

    embed = nextcord.Embed()
    for index in range(26):
        embed.add_field(name=f"n{index}", value="v")
    found = message_errors({"embeds": [embed.to_dict()]}, MessageLimits())
    assert found["embeds"]["0"]["fields"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"


async def test_oversize_interaction_response(discord_emulator: DiscordEmulator, sample_bot) -> None:
    handle = await discord_emulator.trigger_command("hold")
    interaction = await asyncio.wait_for(sample_bot.held.get(), 5)
    with pytest.raises(nextcord.HTTPException) as excinfo:
        await interaction.response.send_message("y" * 2001)
    assert excinfo.value.code == 50035
    assert not handle.acknowledged
    await interaction.response.send_message("short enough")
    assert handle.response_type == 4


async def test_oversize_attachment_rejected(discord_emulator: DiscordEmulator, sample_bot) -> None:
    limit = discord_emulator.config.attachment_size_limit
    channel = _general(sample_bot, discord_emulator)
    with pytest.raises(nextcord.HTTPException) as excinfo:
        await channel.send(file=nextcord.File(io.BytesIO(b"x" * (limit + 1)), filename="big.bin"))
    assert excinfo.value.status == 413 and excinfo.value.code == 40005

    sent = await channel.send(
        "report", file=nextcord.File(io.BytesIO(b"a,b\n1,2\n"), filename="report.csv")
    )
    stored = discord_emulator.message(sent.id)
    assert [(a.filename, a.size, a.content) for a in stored.attachments] == [
        ("report.csv", 8, b"a,b\n1,2\n")
    ]
    assert await sent.attachments[0].read() == b"a,b\n1,2\n"


async def test_empty_message_rejected(discord_emulator: DiscordEmulator, sample_bot) -> None:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=discord_emulator.channel_id)
    with pytest.raises(nextcord.HTTPException) as excinfo:
        await sample_bot.http.request(route, json={"content": ""})
    assert excinfo.value.code == 50006


async def test_enforce_nonce_deduplicates(discord_emulator: DiscordEmulator, sample_bot) -> None:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=discord_emulator.channel_id)
    body = {"content": "exactly once", "nonce": "run-42-result", "enforce_nonce": True}
    first = await sample_bot.http.request(route, json=body)
    second = await sample_bot.http.request(route, json=body)
    assert first["id"] == second["id"]
    posted = [m for m in discord_emulator.channel_messages() if m.content == "exactly once"]
    assert len(posted) == 1

    without_enforce = {"content": "exactly once", "nonce": "run-42-result"}
    third = await sample_bot.http.request(route, json=without_enforce)
    assert third["id"] != first["id"]


async def test_edit_deleted_message(discord_emulator: DiscordEmulator, sample_bot) -> None:
    channel = _general(sample_bot, discord_emulator)
    message = await channel.send("soon deleted by a moderator")
    edited = await message.edit(content="edited once")
    assert edited.content == "edited once"
    discord_emulator.delete_message(discord_emulator.channel_id, message.id)
    with pytest.raises(nextcord.NotFound) as excinfo:
        await message.edit(content="edited twice")
    assert excinfo.value.code == 10008
    with pytest.raises(nextcord.NotFound):
        await channel.fetch_message(message.id)
    stored = discord_emulator.message(message.id)
    assert stored.deleted and [v.content for v in stored.versions] == [
        "soon deleted by a moderator",
        "edited once",
    ]


async def test_files_on_interaction_responses(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    handle = await discord_emulator.trigger_command("hold")
    interaction = await asyncio.wait_for(sample_bot.held.get(), 5)
    await interaction.response.send_message(
        "initial", file=nextcord.File(io.BytesIO(b"first"), filename="a.txt")
    )
    await interaction.followup.send(
        "followup", file=nextcord.File(io.BytesIO(b"second"), filename="b.txt")
    )
    await interaction.edit_original_message(
        content="initial, edited",
        file=nextcord.File(io.BytesIO(b"third"), filename="c.txt"),
    )
    original, followup = handle.messages
    # nextcord lists only the new file in ``attachments``, so Discord drops the old one.
    assert [a.content for a in original.attachments] == [b"third"]
    assert [a.filename for a in followup.attachments] == ["b.txt"]
    assert original.history[0].attachments[0].filename == "a.txt"
