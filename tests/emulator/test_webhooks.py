"""Incoming channel webhooks (Apprise-style posts and nextcord's Webhook)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import nextcord
import pytest

from notifier.testing import DiscordEmulator


async def test_plain_http_posts(discord_emulator: DiscordEmulator) -> None:
    webhook_id, _token = discord_emulator.create_incoming_webhook("results", name="apprise")
    url = discord_emulator.local_webhook_url(webhook_id)
    notification = {
        "content": "build finished",
        "username": "Apprise",
        "avatar_url": "https://example.invalid/a.png",
        "embeds": [{"title": "ok", "description": "all green"}],
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=notification) as response:
            assert response.status == 204
        async with session.post(url, params={"wait": "true"}, json={"content": "w"}) as response:
            assert response.status == 200
            assert (await response.json())["webhook_id"] == str(webhook_id)
        form = aiohttp.FormData()
        form.add_field("payload_json", json.dumps({"content": "with a log"}))
        form.add_field("file", b"line 1\n", filename="run.log", content_type="text/plain")
        async with session.post(url, data=form) as response:
            assert response.status == 204
        bad = f"{discord_emulator.api_base}/webhooks/{webhook_id}/wrong-token"
        async with session.post(bad, json={"content": "x"}) as response:
            assert response.status == 404
            assert await response.json() == {"message": "Unknown Webhook", "code": 10015}

    messages = discord_emulator.webhook_messages(webhook_id)
    assert [m.content for m in messages] == ["build finished", "w", "with a log"]
    assert messages[0].author.username == "Apprise" and messages[0].embeds[0]["title"] == "ok"
    assert messages[2].attachments[0].content == b"line 1\n"
    assert all(r.auth == "webhook" for r in discord_emulator.requests)


async def test_nextcord_webhook_from_url(discord_emulator: DiscordEmulator) -> None:
    webhook_id, _ = discord_emulator.create_incoming_webhook()
    async with aiohttp.ClientSession() as session:
        webhook = nextcord.Webhook.from_url(
            discord_emulator.webhook_url(webhook_id), session=session
        )
        sent = await webhook.send("from nextcord", username="Notifier", wait=True)
        await webhook.edit_message(sent.id, content="edited by nextcord")
        await webhook.send("fire and forget")
    first, second = discord_emulator.webhook_messages(webhook_id)
    assert [v.content for v in first.versions] == ["from nextcord", "edited by nextcord"]
    assert second.content == "fire and forget"
    assert first.channel_id == discord_emulator.channel_id


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_apprise_discord_plugin(
    discord_emulator: DiscordEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import apprise
    from apprise.plugins.discord import NotifyDiscord

    # Apprise hard-codes discord.com; point its class attribute at the emulator.
    monkeypatch.setattr(NotifyDiscord, "notify_url", f"{discord_emulator.api_base}/webhooks")
    webhook_id, token = discord_emulator.create_incoming_webhook("results", name="apprise")
    notifier = apprise.Apprise()
    assert notifier.add(f"discord://{webhook_id}/{token}")
    log = tmp_path / "run.log"
    log.write_text("step 1 ok\n")

    # Apprise is synchronous: keep it off the event loop that serves the emulator.
    delivered = await asyncio.to_thread(
        notifier.notify, body="workflow finished", title="Result", attach=str(log)
    )

    assert delivered
    messages = discord_emulator.webhook_messages(webhook_id)
    assert any("workflow finished" in m.content for m in messages)
    attachments = [a for m in messages for a in m.attachments]
    assert [(a.filename, a.content) for a in attachments] == [("run.log", b"step 1 ok\n")]
