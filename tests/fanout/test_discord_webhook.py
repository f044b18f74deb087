"""Discord webhook notices into a local aiohttp sink that mimics
`POST /api/v10/webhooks/{id}/{token}`: natively (default) and through Apprise's NotifyDiscord."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.events import Event
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, wait_until

from .support import (
    WEBHOOK_ID,
    WEBHOOK_TOKEN,
    make_notice,
    make_settings,
    open_fanout,
    settled,
    with_api_base,
)

WEBHOOK_PATH = f"/api/v10/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"
TEMPLATES = {"failed": {"title": "{command} failed for {user}", "body": "Error: {error}"}}


def webhook_entry(**options: Any) -> dict[str, Any]:
    return {
        "name": "ops-channel",
        "plugin": "discord_webhook",
        "on": ["failed"],
        "options": {"url": f"discord://{WEBHOOK_ID}/{WEBHOOK_TOKEN}", **options},
        "templates": TEMPLATES,
    }


async def test_native_post_carries_content_embed_wait_and_idempotency_key(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    discord = await sinks()
    settings = make_settings(tmp_path, [webhook_entry()])
    notice = make_notice(Event.FAILED, error="site unreachable")
    async with open_fanout(settings, with_api_base(context, discord)) as fanout:
        await fanout.emit(notice)
        (row,) = await settled(fanout, 1)

    (request,) = discord.received
    assert request.method == "POST"
    assert request.path == WEBHOOK_PATH
    assert request.query == {"wait": "true"}
    assert request.key == row.idempotency_key
    assert request.body["content"] == "autointel failed for alice"
    (embed,) = request.body["embeds"]
    assert embed["description"] == "Error: site unreachable"
    assert embed["footer"]["text"] == f"workflow {notice.workflow_id}"
    assert request.body["allowed_mentions"] == {"parse": []}  # the template names nobody
    assert row.status is OutboxStatus.SENT


async def test_via_apprise_uses_apprises_own_discord_plugin_with_an_embed(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    discord = await sinks()
    settings = make_settings(tmp_path, [webhook_entry(via="apprise")])
    async with open_fanout(settings, with_api_base(context, discord)) as fanout:
        await fanout.emit(make_notice(Event.FAILED, error="site unreachable"))
        (row,) = await settled(fanout, 1)

    (request,) = discord.received
    assert request.path == WEBHOOK_PATH
    assert request.headers["User-Agent"] == "Apprise"  # NotifyDiscord sent it, not our aiohttp
    (embed,) = request.body["embeds"]
    assert embed["title"] == "autointel failed for alice"
    assert "Error: site unreachable" in embed["description"]
    assert row.status is OutboxStatus.SENT
    assert next(iter(row.targets.values()))["status"] == "sent"


async def test_a_429_is_retried_after_discords_retry_after(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    discord = await sinks()
    discord.statuses.append((429, {"message": "You are being rate limited.", "retry_after": 0.05}))
    settings = make_settings(tmp_path, [webhook_entry()])
    async with open_fanout(settings, with_api_base(context, discord)) as fanout:
        await fanout.emit(make_notice(Event.FAILED))
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.SENT
    assert row.attempts == 2
    assert len(discord.received) == 2
    assert discord.received[0].key == discord.received[1].key == row.idempotency_key


@pytest.mark.parametrize(
    ("status", "payload", "final", "attempts"),
    [
        (404, {"message": "Unknown Webhook", "code": 10015}, OutboxStatus.FAILED, 1),
        (401, {"message": "Invalid Webhook Token", "code": 50027}, OutboxStatus.FAILED, 1),
        (400, {"message": "Invalid Form Body", "code": 50035}, OutboxStatus.FAILED, 1),
        (500, {"message": "boom"}, OutboxStatus.SENT, 2),
        (502, {"message": "bad gateway"}, OutboxStatus.SENT, 2),
    ],
)
async def test_4xx_is_permanent_and_5xx_is_retried(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    status: int,
    payload: dict[str, Any],
    final: OutboxStatus,
    attempts: int,
) -> None:
    discord = await sinks()
    discord.statuses.append((status, payload))
    settings = make_settings(tmp_path, [webhook_entry()])
    async with open_fanout(settings, with_api_base(context, discord)) as fanout:
        await fanout.emit(make_notice(Event.FAILED))
        (row,) = await settled(fanout, 1)
    assert row.status is final
    assert row.attempts == attempts
    if final is OutboxStatus.FAILED:
        assert row.last_error is not None
        assert f"HTTP {status}" in row.last_error
        assert str(payload["code"]) in row.last_error
        await wait_until(lambda: len(discord.received) == 1, what="one request only")
