"""`/healthz` and `notifier_gateway_connected` on the real bot, against the emulator.

The bot serves its metrics listener on a free port. While the gateway is up, `/healthz` answers
200 with the JSON; the emulator then drops the gateway, and the test keeps nextcord from
reconnecting (its `HTTPClient.ws_connect` waits for the test) so the outage lasts as long as the
test looks at it: 503, the gauge at 0, no heartbeat. Let go, nextcord resumes and both recover.
The same holds for an AutoShardedBot the notifier is attached to (its shards' own events).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import nextcord
from nextcord.ext import commands
from prometheus_client import REGISTRY

from notifier.app import Notifier
from notifier.testing import DiscordEmulator, free_port, wait_until
from notifier.testing.nextcord_support import connect_client
from notifier.testing.project_bot import bot_settings, project_bot


def gauge() -> float | None:
    return REGISTRY.get_sample_value("notifier_gateway_connected")


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def hold_reconnects(bot: commands.Bot) -> asyncio.Event:
    """nextcord's gateway (re)connects wait until the returned event is set."""
    let_go = asyncio.Event()
    connect = bot.http.ws_connect

    async def held(*args: Any, **kwargs: Any) -> Any:
        await let_go.wait()
        return await connect(*args, **kwargs)

    bot.http.ws_connect = held  # type: ignore[method-assign]
    return let_go


async def ride_out_an_outage(bot: commands.Bot, emulator: DiscordEmulator, port: int) -> None:
    """Connected: 200. The gateway dropped and kept down: 503, gauge 0. Resumed: 200, gauge 1."""

    async def answered_heartbeat() -> bool:
        return (await healthz(port))[1]["last_heartbeat_s"] is not None

    await wait_until(answered_heartbeat, what="a heartbeat ACK")
    status, body = await healthz(port)
    assert status == 200
    assert body["gateway"] == "connected"
    assert body["store"] == "ok"
    assert body["outbox_backlog"] == 0
    assert 0 <= body["last_heartbeat_s"] < 60  # the emulator ACKs every heartbeat
    assert gauge() == 1.0

    let_go = hold_reconnects(bot)
    resumed = emulator.resume_count
    await emulator.drop_gateway()

    async def unhealthy() -> bool:
        return (await healthz(port))[0] == 503

    await wait_until(unhealthy, what="/healthz to answer 503")
    status, body = await healthz(port)
    assert (status, body["gateway"], body["store"]) == (503, "disconnected", "ok")
    assert body["last_heartbeat_s"] is None  # no connection, no heartbeat
    assert gauge() == 0.0
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert "notifier_gateway_connected 0.0" in await response.text()
    assert (await healthz(port))[0] == 503  # still down: nothing resumed meanwhile

    let_go.set()
    await emulator.wait_until_resume_count(resumed + 1, timeout_s=30)

    async def healthy() -> bool:
        return (await healthz(port))[0] == 200

    await wait_until(healthy, what="/healthz to answer 200 again")
    assert (await healthz(port))[1]["gateway"] == "connected"
    assert gauge() == 1.0


async def assert_listener_gone(port: int) -> None:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz"):
                raise AssertionError("the metrics listener outlived the bot")
        except aiohttp.ClientConnectionError:
            pass


async def test_healthz_and_the_gauge_follow_the_gateway_through_a_drop_and_a_resume(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    port = free_port()
    overrides = {"metrics": {"listen": f"127.0.0.1:{port}"}}
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        await ride_out_an_outage(bot, emulator, port)

        # A store that cannot be used is unhealthy too, whatever the gateway says.
        await bot.store.close()
        status, body = await healthz(port)
        assert (status, body["gateway"]) == (503, "connected")
        assert body["store"] == "the index cannot be read: the result store is closed"

    # The bot closed: its listener is gone, and the gauge says so.
    assert gauge() == 0.0
    await assert_listener_gone(port)


async def test_an_auto_sharded_bot_with_the_notifier_attached_reports_its_shards(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    port = free_port()
    settings = bot_settings(
        emulator, tmp_path / "data", {"metrics": {"listen": f"127.0.0.1:{port}"}}
    )
    bot = commands.AutoShardedBot(intents=nextcord.Intents.none(), guild_ready_timeout=0.05)
    Notifier(settings).attach(bot)
    try:
        async with await connect_client(bot, emulator):
            await ride_out_an_outage(bot, emulator, port)
    finally:
        if not bot.is_closed():
            await bot.close()
    assert gauge() == 0.0
    await assert_listener_gone(port)
