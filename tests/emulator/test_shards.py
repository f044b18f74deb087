"""Gateway shards: several real nextcord AutoShardedClients, each holding some shards.

What a sharded deployment depends on: every guild's interactions reach the one process that holds
its shard (DMs reach shard 0), a second process configured for a held shard is refused instead of
handling every event twice, IDENTIFYs in one bucket are spaced by the window (one too early gets
op 9 and nextcord tries again), and a client whose shard count disagrees is refused with Discord's
close code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp
import nextcord
import pytest
from nextcord import Interaction

from notifier.testing import DiscordEmulator, connect_client, wait_until
from notifier.testing.gateway import INVALID_SHARD, SHARDING_REQUIRED, ShardingConfig

WINDOW_S = 0.5


class ShardBot(nextcord.AutoShardedClient):
    """One gateway process: holds ``shard_ids`` of ``shard_count``; ``/where`` answers its name.

    After an op 9 it identifies again ``retry_pause_s`` later (nextcord's default waits 5 s).
    """

    def __init__(
        self,
        name: str,
        shard_ids: Iterable[int] | None,
        *,
        shard_count: int | None = 2,
        retry_pause_s: float = WINDOW_S,
    ) -> None:
        super().__init__(
            intents=nextcord.Intents.default(),
            guild_ready_timeout=0.05,
            shard_ids=None if shard_ids is None else list(shard_ids),
            shard_count=shard_count,
        )
        self.name = name
        self.retry_pause_s = retry_pause_s
        self.seen_guilds: list[int | None] = []

        @self.slash_command(name="where", description="Which process took this")
        async def where(interaction: Interaction) -> None:
            self.seen_guilds.append(interaction.guild_id)
            await interaction.response.send_message(self.name)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(self.retry_pause_s)


def interactions_sent_to(emulator: DiscordEmulator, shard_id: int) -> list[str | None]:
    """Guild ids of the INTERACTION_CREATEs the emulator sent to that shard's session."""
    return [
        data.get("guild_id")
        for event, data in emulator.events_sent_to_shard(shard_id)
        if event == "INTERACTION_CREATE"
    ]


async def test_each_process_receives_only_the_interactions_of_its_shard(
    discord_emulator: DiscordEmulator,
) -> None:
    emulator = discord_emulator
    emulator.sharding = ShardingConfig(shards=2, max_concurrency=2, identify_window_s=WINDOW_S)
    on_zero = emulator.add_guild("Zero", shard=0)
    on_one = emulator.add_guild("One", shard=1)
    assert (emulator.shard_of(on_zero.id), emulator.shard_of(on_one.id)) == (0, 1)
    first, second = ShardBot("first", [0]), ShardBot("second", [1])

    async with await connect_client(first, emulator), await connect_client(second, emulator):
        assert emulator.connected_shards == [0, 1]
        guilds_by_shard = {0: set(), 1: set()}
        for guild_id in (emulator.guild_id, on_zero.id, on_one.id):
            guilds_by_shard[emulator.shard_of(guild_id)].add(guild_id)
        assert {g.id for g in first.guilds} == guilds_by_shard[0]
        assert {g.id for g in second.guilds} == guilds_by_shard[1]

        in_zero = await emulator.trigger_command("where", guild=on_zero.id, user="bob")
        in_one = await emulator.trigger_command("where", guild=on_one.id, user="bob")
        in_dm = await emulator.trigger_command("where", dm=True, user="bob")
        assert (await in_zero.wait_for_message()).content == "first"
        assert (await in_one.wait_for_message()).content == "second"
        assert (await in_dm.wait_for_message()).content == "first"

        assert interactions_sent_to(emulator, 0) == [str(on_zero.id), None]
        assert interactions_sent_to(emulator, 1) == [str(on_one.id)]
        assert first.seen_guilds == [on_zero.id, None]
        assert second.seen_guilds == [on_one.id]

    # Two buckets (max_concurrency 2): both shards identified at once, nobody was turned away.
    assert sorted(emulator.identify_times) == [0, 1]
    assert emulator.identify_refusals == []


async def test_a_second_process_identifying_for_a_held_shard_is_refused(
    discord_emulator: DiscordEmulator,
) -> None:
    emulator = discord_emulator
    emulator.sharding = ShardingConfig(shards=2, max_concurrency=2, identify_window_s=WINDOW_S)
    on_one = emulator.add_guild("One", shard=1)
    holder, intruder = ShardBot("holder", [1]), ShardBot("intruder", [1])

    async with await connect_client(ShardBot("zero", [0]), emulator):
        async with await connect_client(holder, emulator):
            with pytest.raises(nextcord.ConnectionClosed) as refused:
                await connect_client(intruder, emulator)
            assert refused.value.code == INVALID_SHARD
            [refusal] = emulator.identify_refusals
            assert refusal.shard == (1, 2) and refusal.close_code == INVALID_SHARD
            assert "shard 1 of 2 is already held by a live session" in refusal.reason
            assert emulator.gateway_connections[-1].close_reason == refusal.reason

            # The holder keeps its shard and its guild's users.
            assert emulator.connected_shards == [0, 1]
            handle = await emulator.trigger_command("where", guild=on_one.id)
            assert (await handle.wait_for_message()).content == "holder"
            assert intruder.seen_guilds == []

        # Once the holder has gone, the shard is free again.
        await wait_until(lambda: emulator.connected_shards == [0], what="shard 1 to be released")
        async with await connect_client(ShardBot("successor", [1]), emulator):
            handle = await emulator.trigger_command("where", guild=on_one.id)
            assert (await handle.wait_for_message()).content == "successor"


async def test_identifies_in_one_bucket_are_spaced_by_the_window(
    discord_emulator: DiscordEmulator,
) -> None:
    emulator = discord_emulator
    emulator.sharding = ShardingConfig(shards=2, max_concurrency=1, identify_window_s=WINDOW_S)
    # This process identifies shard 1 right after shard 0 and retries quickly: the emulator, like
    # Discord, answers the early ones with op 9 until the bucket's window has passed.
    hasty = ShardBot("hasty", [0, 1], retry_pause_s=WINDOW_S / 10)

    async with await connect_client(hasty, emulator):
        # nextcord reports ready after the first shard's READY; shard 1 is still retrying.
        await emulator.wait_until_shards_connected(0, 1)

    [times] = emulator.identify_times.values()
    assert len(times) == 2
    assert times[1] - times[0] >= WINDOW_S
    too_early = emulator.identify_refusals
    assert too_early, "shard 1's first IDENTIFY came within the window and should be refused"
    assert {(r.shard, r.close_code) for r in too_early} == {((1, 2), None)}
    assert all(times[0] <= r.at < times[1] for r in too_early)


class UnshardedBot(nextcord.Client):
    def __init__(self) -> None:
        super().__init__(intents=nextcord.Intents.default(), guild_ready_timeout=0.05)


@pytest.mark.parametrize(
    ("make_client", "code", "reason"),
    [
        (lambda: ShardBot("three", [0], shard_count=3), INVALID_SHARD, "shard_count 3"),
        (UnshardedBot, SHARDING_REQUIRED, "Sharding required"),
    ],
    ids=["shard-count-mismatch", "no-shard-at-all"],
)
async def test_a_client_that_disagrees_on_the_shard_count_is_refused(
    discord_emulator: DiscordEmulator,
    make_client: Callable[[], nextcord.Client],
    code: int,
    reason: str,
) -> None:
    discord_emulator.sharding = ShardingConfig(shards=2, identify_window_s=WINDOW_S)
    with pytest.raises(nextcord.ConnectionClosed) as refused:
        await connect_client(make_client(), discord_emulator)
    assert refused.value.code == code
    [refusal] = discord_emulator.identify_refusals
    assert refusal.close_code == code and reason in refusal.reason
    assert discord_emulator.connected_shards == []
    assert discord_emulator.identify_count == 0


async def test_a_client_without_a_shard_count_runs_every_shard_gateway_bot_announces(
    discord_emulator: DiscordEmulator,
) -> None:
    emulator = discord_emulator
    emulator.sharding = ShardingConfig(shards=2, max_concurrency=2, identify_window_s=WINDOW_S)
    everything = ShardBot("everything", None, shard_count=None)

    async with await connect_client(everything, emulator):
        assert everything.shard_count == 2
        assert emulator.connected_shards == [0, 1]
        headers = {"Authorization": f"Bot {emulator.bot_token}"}
        url = f"{emulator.api_base}/gateway/bot"
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
            announced = await response.json()

    assert announced["shards"] == 2
    limit = announced["session_start_limit"]
    assert (limit["total"], limit["remaining"], limit["max_concurrency"]) == (1000, 998, 2)
    assert 0 < limit["reset_after"] <= 86_400_000
