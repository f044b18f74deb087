"""REST details exercised without a bot: command registry, callback options, config marker."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from notifier.testing import DiscordEmulator


async def _call(
    emulator: DiscordEmulator, method: str, path: str, body: Any = None, *, bot: bool = True
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {emulator.bot_token}"} if bot else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, emulator.api_base + path, json=body, headers=headers) as response,
    ):
        payload = await response.json() if response.content_type == "application/json" else None
        return response.status, payload


def _command(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": f"{name} command", "type": 1, **extra}


async def test_command_registry_endpoints(discord_emulator: DiscordEmulator) -> None:
    base = f"/applications/{discord_emulator.application_id}/commands"
    status, created = await _call(discord_emulator, "PUT", base, [_command("a"), _command("b")])
    assert status == 200 and [c["name"] for c in created] == ["a", "b"]
    ids = {c["name"]: c["id"] for c in created}

    status, kept = await _call(discord_emulator, "PUT", base, [_command("b", description="new")])
    assert status == 200 and kept[0]["id"] == ids["b"]
    assert [c.name for c in discord_emulator.commands] == ["b"]

    status, upserted = await _call(discord_emulator, "POST", base, _command("b"))
    assert status == 200 and upserted["id"] == ids["b"]
    status, new = await _call(discord_emulator, "POST", base, _command("c"))
    assert status == 201

    status, patched = await _call(
        discord_emulator, "PATCH", f"{base}/{new['id']}", {"description": "x"}
    )
    assert status == 200 and patched["description"] == "x"
    status, _ = await _call(discord_emulator, "DELETE", f"{base}/{new['id']}")
    assert status == 204
    status, missing = await _call(discord_emulator, "GET", f"{base}/{new['id']}")
    assert status == 404 and missing["code"] == 10063

    guild_base = f"/applications/{discord_emulator.application_id}/guilds/{discord_emulator.guild_id}/commands"
    status, guild_cmd = await _call(discord_emulator, "POST", guild_base, _command("g"))
    assert status == 201 and guild_cmd["guild_id"] == str(discord_emulator.guild_id)
    assert discord_emulator.command_named("g").guild_id == discord_emulator.guild_id


async def test_command_validation(discord_emulator: DiscordEmulator) -> None:
    base = f"/applications/{discord_emulator.application_id}/commands"
    options = [
        {"type": 3, "name": "opt", "description": "optional"},
        {"type": 3, "name": "req", "description": "required", "required": True},
    ]
    status, body = await _call(discord_emulator, "POST", base, _command("bad", options=options))
    assert status == 400 and body["code"] == 50035
    assert "required" in body["errors"]["options"]["1"]
    status, body = await _call(discord_emulator, "POST", base, _command("Upper"))
    assert status == 400 and "name" in body["errors"]


async def test_unauthenticated_and_unknown_routes(discord_emulator: DiscordEmulator) -> None:
    status, body = await _call(discord_emulator, "GET", "/users/@me", bot=False)
    assert status == 401 and body == {"message": "401: Unauthorized", "code": 0}
    status, body = await _call(discord_emulator, "GET", "/no/such/route")
    assert status == 404 and body["code"] == 0
    status, body = await _call(discord_emulator, "GET", "/gateway", bot=False)
    assert status == 200 and body["url"] == discord_emulator.gateway_url


async def test_callback_with_response(discord_emulator: DiscordEmulator, sample_bot) -> None:
    handle = await discord_emulator.trigger_command("hold")
    await asyncio.wait_for(sample_bot.held.get(), 5)
    path = f"/interactions/{handle.id}/{handle.token}/callback?with_response=true"
    status, body = await _call(
        discord_emulator,
        "POST",
        path,
        {"type": 4, "data": {"content": "hi", "flags": 64}},
        bot=False,
    )
    assert status == 200
    assert body["resource"]["message"]["content"] == "hi"
    assert body["interaction"]["response_message_ephemeral"] is True
    assert handle.ephemeral
    assert discord_emulator.requests[-1].auth == "interaction-token"


@pytest.mark.discord_emulator(interaction_ttl_s=42.0, bot_username="marker-bot")
async def test_marker_overrides_config(discord_emulator: DiscordEmulator) -> None:
    assert discord_emulator.config.interaction_ttl_s == 42.0
    assert discord_emulator.bot_user.username == "marker-bot"
    # The suite's base config (conftest) still applies to fields the marker leaves alone.
    assert discord_emulator.config.initial_response_deadline_s == 1.0
