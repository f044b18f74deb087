"""The REST budget shared by every process of a bot (notifier.discord.rest_budget), against a real
PostgreSQL, and the hook that makes a real nextcord client wait for it, against the emulator.

Times asserted on are the turns the database handed out (on its clock), never how long the test
took.
"""

from __future__ import annotations

import asyncio
import bisect
import importlib
import itertools
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import nextcord
import nextcord.http
import psycopg
import pytest

from notifier.discord import compat, rest_budget
from notifier.discord.compat import Route, before_bot_requests
from notifier.discord.rest_budget import (
    REST_BUDGET_COMPONENT,
    REST_BUDGET_MIGRATIONS,
    TABLE,
    RestBudget,
    RestBudgetSettings,
    Turn,
    budget_key,
    install_rest_budget,
)
from notifier.errors import NextcordIncompatible, StoreError
from notifier.testing import DiscordEmulator, RateLimitRule, connect_client, wait_until
from notifier.testing.processes import CapturedProcess, child_env
from notifier.testing.project_bot import PROJECT_ROOT

SENDER = Path(__file__).with_name("rest_sender.py")
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0123"
# Only keeps a broken run from hanging; nothing measures speed.
PROCESS_LIMIT_S = 120.0


def _most_in_any_window(times: list[float], window_s: float) -> int:
    """The most of `times` that fall in one span [t, t + window_s), over every start t (the
    worst span starts at one of the times)."""
    ordered = sorted(times)
    return max(
        bisect.bisect_left(ordered, start + window_s) - index for index, start in enumerate(ordered)
    )


def _seconds(turns: list[Turn]) -> list[float]:
    first = min(t.at for t in turns)
    return [(t.at - first).total_seconds() for t in turns]


@pytest.fixture
async def budgets(postgres_dsn: str) -> AsyncIterator[Callable[..., Any]]:
    """Open budgets (each with a pool of its own, as each process has); closed afterwards."""
    opened: list[RestBudget] = []

    async def open_budget(settings: RestBudgetSettings, token: str = TOKEN) -> RestBudget:
        budget = await RestBudget.open(postgres_dsn, token, settings)
        opened.append(budget)
        return budget

    yield open_budget
    await asyncio.gather(*(b.close() for b in opened))


# -- the bucket ---------------------------------------------------------------------------------


async def test_several_pools_never_get_more_than_rate_times_t_plus_burst(
    budgets: Callable[..., Any],
) -> None:
    settings = RestBudgetSettings(rate_per_s=100.0, burst=5.0)
    pools = [await budgets(settings) for _ in range(3)]

    turns: list[Turn] = await asyncio.gather(*(pools[i % 3].take() for i in range(300)))

    assert all(t.shared for t in turns)
    times = _seconds(turns)
    for window_s in (0.05, 0.2, 1.0):
        most = _most_in_any_window(times, window_s)
        assert most <= settings.rate_per_s * window_s + settings.burst, (window_s, most)
    # And the bucket is used, not starved: past the burst, one turn every 1/rate seconds.
    assert max(times) == pytest.approx((300 - settings.burst) / settings.rate_per_s, abs=0.02)


async def test_a_quiet_bucket_fills_up_to_burst_and_no_further(
    budgets: Callable[..., Any],
) -> None:
    budget = await budgets(RestBudgetSettings(rate_per_s=50.0, burst=4.0))
    await asyncio.gather(*(budget.take() for _ in range(4)))  # empty
    await wait_until(lambda: _level_at_least(budget, 4.0), what="the bucket to refill")
    await asyncio.sleep(0.3)  # quiet: an uncapped bucket would now hold 15 more
    assert await budget.level() == pytest.approx(4.0)

    turns = await asyncio.gather(*(budget.take() for _ in range(6)))

    waits = sorted(t.waited_s for t in turns)
    assert waits[:4] == [0.0] * 4  # the burst goes at once
    assert waits[4] > 0 and waits[5] > waits[4]  # then the rate


async def _level_at_least(budget: RestBudget, level: float) -> bool:
    return await budget.level() >= level - 1e-9


@pytest.mark.parametrize(
    ("cancel_when", "loop_turns"),
    [
        ("before its statement is sent", 1),  # take() has queued it; the pump has not run
        ("while its statement is in flight", 2),  # the pump took it and awaits the database
        ("while it sleeps until its turn", None),
    ],
)
async def test_a_cancelled_waiter_takes_no_turn(
    budgets: Callable[..., Any], cancel_when: str, loop_turns: int | None
) -> None:
    rate_per_s = 0.5  # one turn every 2 s
    budget = await budgets(RestBudgetSettings(rate_per_s=rate_per_s, burst=1.0))
    first = await budget.take()  # empties the bucket

    waiter = asyncio.create_task(budget.take())
    if loop_turns is None:
        await wait_until(lambda: _level_below(budget, -0.5), what="the waiter's reservation")
    else:
        for _ in range(loop_turns):
            await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await budget.settle()

    after = await budget.take()
    # The turn the cancelled waiter held, if any, comes to the next caller: one interval after
    # the first, not two.
    assert (after.at - first.at).total_seconds() == pytest.approx(1 / rate_per_s, abs=0.01)


async def _level_below(budget: RestBudget, level: float) -> bool:
    return await budget.level() < level


async def test_processes_of_one_bot_share_one_row_and_the_token_never_reaches_it(
    budgets: Callable[..., Any], postgres_dsn: str
) -> None:
    await budgets(RestBudgetSettings(rate_per_s=10.0, burst=2.0))
    await budgets(RestBudgetSettings(rate_per_s=20.0, burst=3.0))  # started later: its settings
    await budgets(RestBudgetSettings(), token="another-bot-token")

    async with await psycopg.AsyncConnection.connect(postgres_dsn) as connection:
        cursor = await connection.execute(f"SELECT * FROM {TABLE} ORDER BY rate_per_s")
        rows = await cursor.fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (budget_key(TOKEN), 20.0, 3.0),
        (budget_key("another-bot-token"), 45.0, 1.0),
    ]
    assert not any(TOKEN in str(value) for row in rows for value in row)


async def test_a_database_error_falls_back_to_a_slow_bucket_of_its_own(
    budgets: Callable[..., Any], postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest_budget, "RETRY_AWAY_S", 0.0)  # every turn tries the database
    settings = RestBudgetSettings(rate_per_s=100.0, burst=1.0, fallback_rate_per_s=20.0)
    budget = await budgets(settings)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
        await admin.execute(f"ALTER TABLE {TABLE} RENAME TO budget_away")

        turns = await asyncio.gather(*(budget.take() for _ in range(4)))

        await admin.execute(f"ALTER TABLE budget_away RENAME TO {TABLE}")
    assert not any(t.shared for t in turns)
    times = sorted(_seconds(turns))
    assert all(b - a >= 1 / 20.0 - 1e-3 for a, b in itertools.pairwise(times))
    assert (await budget.take()).shared  # back to the shared bucket once the database answers


async def test_the_table_is_a_migration_set_with_its_version_row(
    budgets: Callable[..., Any], postgres_dsn: str
) -> None:
    await asyncio.gather(*(budgets(RestBudgetSettings()) for _ in range(3)))  # started together

    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as connection:
        cursor = await connection.execute("SELECT component, version FROM notifier_schema_versions")
        assert await cursor.fetchall() == [(REST_BUDGET_COMPONENT, len(REST_BUDGET_MIGRATIONS))]
        await connection.execute(
            "UPDATE notifier_schema_versions SET version = 99 WHERE component = %s",
            (REST_BUDGET_COMPONENT,),
        )
    with pytest.raises(StoreError, match="at schema version 99, newer than this notifier knows"):
        await RestBudget.open(postgres_dsn, TOKEN)


def test_settings_refuse_a_budget_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="rate_per_s must be above 0"):
        RestBudgetSettings(rate_per_s=0)
    with pytest.raises(ValueError, match="burst must be at least 1"):
        RestBudgetSettings(burst=0.5)


async def test_a_server_that_does_not_answer_is_named_without_the_password() -> None:
    dsn = "postgresql://notifier:s3cret-pw@127.0.0.1:1/notifier"
    with pytest.raises(psycopg.OperationalError) as caught:
        await RestBudget.open(dsn, TOKEN)
    assert "s3cret-pw" not in str(caught.value)
    assert str(caught.value).startswith("REST budget: cannot use PostgreSQL:")


# -- the hook on a nextcord client --------------------------------------------------------------


async def test_only_requests_with_the_bot_token_wait(discord_emulator: DiscordEmulator) -> None:
    client = nextcord.Client()
    waits: list[int] = []

    async def wait() -> None:
        waits.append(1)

    remove = before_bot_requests(client, wait)
    try:
        await client.login(discord_emulator.bot_token)
        assert len(waits) == 1  # GET /users/@me with the bot token
        await client.http.send_message(discord_emulator.channel_id, "with the bot token")
        assert len(waits) == 2
        hook_id, hook_token = discord_emulator.create_incoming_webhook()
        route = Route(
            "POST",
            "/webhooks/{webhook_id}/{webhook_token}",
            webhook_id=hook_id,
            webhook_token=hook_token,
        )
        await compat.request(client, route, auth=False, json={"content": "webhook"})
        assert len(waits) == 2  # the webhook's token is the credential: no turn taken
        with pytest.raises(RuntimeError, match="already wait"):
            before_bot_requests(client, wait)
    finally:
        remove()
        await client.close()
    assert "recreate" not in vars(client.http)  # removed: nextcord's own method again


@pytest.fixture
def fresh_compat() -> Iterator[Callable[[], object]]:
    """Import compat anew (its check runs at import); the module every other one holds is put
    back afterwards."""
    original = sys.modules["notifier.discord.compat"]

    def load() -> object:
        sys.modules.pop("notifier.discord.compat", None)
        return importlib.import_module("notifier.discord.compat")

    yield load
    sys.modules["notifier.discord.compat"] = original


async def _recreate_elsewhere(self: object) -> None:
    """A release that keeps its session somewhere else: the hook would never see it."""


async def _request_elsewhere(self: object, route: object, *, auth: object = None) -> None:
    """A release that sends some other way: the hook would never see it."""


@pytest.mark.parametrize(
    ("name", "replace"),
    [
        ("HTTPClient.recreate() making the session", ("recreate", _recreate_elsewhere)),
        ("HTTPClient.request sending through __session.request", ("request", _request_elsewhere)),
    ],
)
def test_a_nextcord_the_hook_cannot_reach_stops_the_import(
    monkeypatch: pytest.MonkeyPatch,
    fresh_compat: Callable[[], object],
    name: str,
    replace: tuple[str, object],
) -> None:
    monkeypatch.setattr(nextcord.http.HTTPClient, *replace)
    monkeypatch.setattr(nextcord, "__version__", "3.9.0")

    with pytest.raises(NextcordIncompatible) as caught:
        fresh_compat()
    assert f"needs {name}, which this version lacks" in str(caught.value)


# -- four processes, one emulator ---------------------------------------------------------------

MESSAGES = 300
PROCESSES = 4


async def _send_from_processes(
    emulator: DiscordEmulator, budget_args: list[str]
) -> list[dict[str, Any]]:
    """Start PROCESSES senders at once, each posting its share of MESSAGES; their summaries."""
    per_process = MESSAGES // PROCESSES
    children = [
        await CapturedProcess.start(
            sys.executable,
            str(SENDER),
            emulator.api_base,
            str(emulator.channel_id),
            str(per_process),
            f"process {index} message",
            *budget_args,
            env=child_env(TEST_BOT_TOKEN=emulator.bot_token),
            cwd=PROJECT_ROOT,
        )
        for index in range(PROCESSES)
    ]
    try:
        codes = await asyncio.gather(*(c.finish(PROCESS_LIMIT_S) for c in children))
    finally:
        await asyncio.gather(*(c.kill() for c in children))
    assert codes == [0] * PROCESSES, "\n\n".join(c.output()[-3000:] for c in children)
    return [json.loads(c.stdout[-1]) for c in children]


def _global_429s(emulator: DiscordEmulator) -> int:
    return sum(
        1
        for r in emulator.requests
        if r.status == 429 and isinstance(r.response, dict) and r.response.get("global")
    )


@pytest.mark.discord_emulator(rate_limits={}, global_rate_limit=RateLimitRule(20, 1.0))
async def test_four_processes_through_the_budget_get_no_429_and_lose_nothing(
    discord_emulator: DiscordEmulator, postgres_dsn: str
) -> None:
    summaries = await _send_from_processes(discord_emulator, [postgres_dsn, "18", "1"])

    assert discord_emulator.stats.rate_limited == 0
    assert [s["failed"] for s in summaries] == [[]] * PROCESSES
    contents = sorted(m.content for m in discord_emulator.channel_messages())
    assert contents == sorted(
        f"process {p} message {i}" for p in range(PROCESSES) for i in range(MESSAGES // PROCESSES)
    )


@pytest.mark.discord_emulator(rate_limits={}, global_rate_limit=RateLimitRule(20, 1.0))
async def test_four_processes_without_the_budget_get_global_429s(
    discord_emulator: DiscordEmulator,
) -> None:
    """The same four processes, each paced only by nextcord's own limiter (50/s per process):
    together they go over the bot's limit, which is what the budget is for."""
    await _send_from_processes(discord_emulator, [])

    assert _global_429s(discord_emulator) > 0


async def test_a_connected_bot_with_the_hook_still_works(
    discord_emulator: DiscordEmulator, budgets: Callable[..., Any], postgres_dsn: str
) -> None:
    """The hook on a client that holds the gateway (a gateway process): it connects, syncs its
    commands and posts, every bot-token call taking its turn in the shared bucket."""
    budget = await budgets(RestBudgetSettings(), token=discord_emulator.bot_token)
    before = await _refreshed_at(postgres_dsn)
    client = nextcord.Client(intents=nextcord.Intents.default(), guild_ready_timeout=0.05)
    remove = install_rest_budget(client, budget)
    try:
        async with await connect_client(client, discord_emulator):
            channel = client.get_channel(discord_emulator.channel_id)
            assert isinstance(channel, nextcord.TextChannel)
            message = await channel.send("through the budget")
    finally:
        remove()
    assert discord_emulator.message(message.id).content == "through the budget"
    assert await _refreshed_at(postgres_dsn) > before  # the calls took turns in the row


async def _refreshed_at(dsn: str) -> datetime:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(f"SELECT refreshed_at FROM {TABLE}")
        row = await cursor.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value
