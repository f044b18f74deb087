"""Per-route rate limits: headers, 429s, and nextcord's retry behaviour."""

from __future__ import annotations

import asyncio

import aiohttp

from notifier.testing import DiscordEmulator, RateLimitRule


async def test_headers_on_every_limited_response(discord_emulator: DiscordEmulator) -> None:
    url = f"{discord_emulator.api_base}/channels/{discord_emulator.channel_id}/messages"
    headers = {"Authorization": f"Bot {discord_emulator.bot_token}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"content": "one"}, headers=headers) as response:
            assert response.status == 200
            assert response.headers["X-RateLimit-Limit"] == "5"
            assert response.headers["X-RateLimit-Remaining"] == "4"
            assert float(response.headers["X-RateLimit-Reset-After"]) > 0
            assert float(response.headers["X-RateLimit-Reset"]) > 0
            assert response.headers["X-RateLimit-Bucket"]
            assert response.headers["Content-Type"] == "application/json"
        for _ in range(4):
            async with session.post(url, json={"content": "more"}, headers=headers) as response:
                assert response.status == 200
        async with session.post(url, json={"content": "too many"}, headers=headers) as response:
            assert response.status == 429
            body = await response.json()
            assert body["message"] == "You are being rate limited."
            assert body["global"] is False and body["retry_after"] > 0
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert response.headers["Via"]
    assert discord_emulator.stats.rate_limited == 1
    assert len(discord_emulator.channel_messages()) == 5


async def test_nextcord_honours_429_and_loses_nothing(
    discord_emulator: DiscordEmulator, sample_bot
) -> None:
    discord_emulator.config.rate_limits["message_create"] = RateLimitRule(3, 0.5)
    channel_id = discord_emulator.results_channel_id
    url = f"{discord_emulator.api_base}/channels/{channel_id}/messages"
    headers = {"Authorization": f"Bot {discord_emulator.bot_token}"}
    # Another process of the same bot drains the bucket nextcord does not know about.
    async with aiohttp.ClientSession() as session:
        for index in range(3):
            async with session.post(url, json={"content": f"other {index}"}, headers=headers):
                pass

    channel = sample_bot.get_channel(channel_id)
    sent = await asyncio.gather(*(channel.send(f"result {i}") for i in range(7)))

    assert len({m.id for m in sent}) == 7
    contents = [m.content for m in discord_emulator.channel_messages(channel_id)]
    assert sorted(c for c in contents if c.startswith("result")) == [
        f"result {i}" for i in range(7)
    ]
    assert discord_emulator.stats.rate_limited >= 1
    limited = discord_emulator.requests_to("POST", "/channels/{channel_id}/messages", status=429)
    assert all(r.response["retry_after"] > 0 for r in limited)


async def test_rate_limits_can_be_disabled(discord_emulator: DiscordEmulator) -> None:
    discord_emulator.config.rate_limits_enabled = False
    url = f"{discord_emulator.api_base}/channels/{discord_emulator.channel_id}/messages"
    headers = {"Authorization": f"Bot {discord_emulator.bot_token}"}
    async with aiohttp.ClientSession() as session:
        for _ in range(8):
            async with session.post(url, json={"content": "spam"}, headers=headers) as response:
                assert response.status == 200
                assert "X-RateLimit-Limit" not in response.headers
    assert discord_emulator.stats.rate_limited == 0
