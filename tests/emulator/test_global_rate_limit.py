"""Discord's global limit in the emulator: so many bot-token requests per second, whatever the
route, connection or process, then 429 with ``global: true`` and ``X-RateLimit-Global``.

Most tests use a long window (N requests per 30 s) so that every request of the test falls in one
window however slow the machine is: the counts are then exact, with no timing in the assertions.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from typing import Any

import aiohttp
import pytest

from notifier.testing import DiscordEmulator, RateLimitRule
from notifier.testing.processes import CapturedProcess, child_env
from notifier.testing.project_bot import PROJECT_ROOT
from notifier.testing.recording import RequestRecord

POST_MESSAGE = "/channels/{channel_id}/messages"
LONG_WINDOW_S = 30.0


def _global_429s(emulator: DiscordEmulator) -> list[RequestRecord]:
    return [
        r
        for r in emulator.requests
        if r.status == 429 and isinstance(r.response, dict) and r.response.get("global") is True
    ]


async def _post(
    session: aiohttp.ClientSession, emulator: DiscordEmulator, channel_id: int, content: str
) -> tuple[int, dict[str, str], Any]:
    url = f"{emulator.api_base}/channels/{channel_id}/messages"
    headers = {"Authorization": f"Bot {emulator.bot_token}"}
    async with session.post(url, json={"content": content}, headers=headers) as response:
        return response.status, dict(response.headers), await response.json()


@pytest.fixture
def limited(discord_emulator: DiscordEmulator) -> DiscordEmulator:
    """10 bot requests per 30 s, and no per-route buckets: only the global limit answers 429."""
    discord_emulator.config.rate_limits = {}
    discord_emulator.config.global_rate_limit = RateLimitRule(10, LONG_WINDOW_S)
    return discord_emulator


async def test_one_count_over_every_connection_and_route(limited: DiscordEmulator) -> None:
    channels = [limited.channel_id, limited.results_channel_id, limited.add_channel("more").id]
    sessions = [aiohttp.ClientSession() for _ in range(3)]  # three separate connection pools
    try:
        answers = await asyncio.gather(
            *(_post(sessions[i % 3], limited, channels[i % 3], f"message {i}") for i in range(30))
        )
    finally:
        await asyncio.gather(*(s.close() for s in sessions))

    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 10 + [429] * 20
    assert sum(len(limited.channel_messages(c)) for c in channels) == 10
    for status, headers, body in answers:
        if status != 429:
            continue
        assert body["global"] is True
        assert body["message"] == "You are being rate limited."
        assert 0 < body["retry_after"] <= LONG_WINDOW_S
        assert headers["X-RateLimit-Global"] == "true"
        assert headers["X-RateLimit-Scope"] == "global"
        assert int(headers["Retry-After"]) >= body["retry_after"]
        assert headers["Via"]  # without it nextcord takes the 429 for a Cloudflare ban
    assert len(_global_429s(limited)) == 20 == limited.stats.rate_limited


_CHILD = textwrap.dedent(
    """
    import json, sys, urllib.error, urllib.request
    api, token, channel, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    statuses = []
    for index in range(count):
        request = urllib.request.Request(
            f"{api}/channels/{channel}/messages",
            data=json.dumps({"content": f"child {index}"}).encode(),
            headers={"Authorization": f"Bot {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
    print(json.dumps(statuses))
    """
)


async def test_processes_sharing_the_token_share_the_limit(limited: DiscordEmulator) -> None:
    """Three processes, each well under the limit alone (6 requests for a limit of 10), go over
    it together: the emulator counts per bot token, not per client."""
    children = [
        await CapturedProcess.start(
            sys.executable,
            "-c",
            _CHILD,
            limited.api_base,
            limited.bot_token,
            str(limited.channel_id),
            "6",
            env=child_env(),
            cwd=PROJECT_ROOT,
        )
        for _ in range(3)
    ]
    try:
        codes = await asyncio.gather(*(child.finish() for child in children))
    finally:
        await asyncio.gather(*(child.kill() for child in children))
    assert codes == [0, 0, 0], [child.output() for child in children]
    accepted = limited.requests_to("POST", POST_MESSAGE, status=200)
    assert len(accepted) == 10
    assert len(_global_429s(limited)) == 8
    assert len(limited.channel_messages()) == 10


async def test_webhook_calls_carry_no_bot_token_and_are_not_counted(
    limited: DiscordEmulator,
) -> None:
    hook_id, hook_token = limited.create_incoming_webhook()
    async with aiohttp.ClientSession() as session:
        for index in range(10):
            status, _, _ = await _post(session, limited, limited.channel_id, f"bot {index}")
            assert status == 200
        status, _, body = await _post(session, limited, limited.channel_id, "one too many")
        assert (status, body["global"]) == (429, True)
        hook_url = f"{limited.local_webhook_url(hook_id)}?wait=true"
        async with session.post(hook_url, json={"content": "via the webhook"}) as response:
            assert response.status == 200
    assert hook_token  # the webhook's own token was the credential
    assert [m.content for m in limited.webhook_messages(hook_id)] == ["via the webhook"]


async def test_the_window_frees_as_time_passes(limited: DiscordEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        for index in range(10):
            await _post(session, limited, limited.channel_id, f"first {index}")
        status, _, body = await _post(session, limited, limited.channel_id, "too early")
        assert status == 429
        limited.advance_time(body["retry_after"])
        status, _, _ = await _post(session, limited, limited.channel_id, "on time")
        assert status == 200


@pytest.mark.parametrize(
    "switch_off",
    [
        pytest.param(lambda c: setattr(c, "global_rate_limit", None), id="global_rate_limit=None"),
        pytest.param(lambda c: setattr(c, "rate_limits_enabled", False), id="master switch"),
    ],
)
async def test_it_can_be_turned_off(limited: DiscordEmulator, switch_off: Any) -> None:
    switch_off(limited.config)
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(
            *(_post(session, limited, limited.channel_id, f"m {i}") for i in range(25))
        )
    assert [status for status, _, _ in answers] == [200] * 25
    assert not _global_429s(limited)


async def test_the_default_is_discords_fifty_per_second(discord_emulator: DiscordEmulator) -> None:
    assert discord_emulator.config.global_rate_limit == RateLimitRule(50, 1.0)


async def test_nextcord_waits_out_a_global_429_and_loses_nothing(
    discord_emulator: DiscordEmulator, sample_bot: Any
) -> None:
    """nextcord's own limiter allows 50/s per process; a lower global limit (as when other
    processes of the bot use most of it) answers 429s, which nextcord waits out and retries."""
    discord_emulator.config.rate_limits = {}
    discord_emulator.config.global_rate_limit = RateLimitRule(5, 0.5)
    channel = sample_bot.get_channel(discord_emulator.results_channel_id)

    sent = await asyncio.gather(*(channel.send(f"result {i}") for i in range(15)))

    assert len({m.id for m in sent}) == 15
    contents = sorted(m.content for m in discord_emulator.channel_messages(channel.id))
    assert contents == sorted(f"result {i}" for i in range(15))
    assert _global_429s(discord_emulator)
