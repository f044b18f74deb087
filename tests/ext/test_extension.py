"""The notifier loaded into a bot that already exists (issue 16, item 2): a plain
`commands.Bot` with a command of its own loads `notifier.ext` and gets the notifier's commands,
store, runner and fanout, without subclassing anything, and the whole ladder works against the
emulator: a workflow that outlasts its token hands off and delivers in the channel, its result
is retrievable, and the bot's own command and its own error handling are left alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nextcord
import pytest
from nextcord.ext import commands

from notifier.app import Notifier
from notifier.discord.compat import live_session
from notifier.ext import notifier_of
from notifier.records import WorkflowStatus
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, text_of, wait_until
from notifier.testing.nextcord_support import connect_client
from notifier.testing.project_bot import SteeredWorkflow, bot_settings
from notifier.workflows import WorkflowSpec

TTL = pytest.mark.discord_emulator(interaction_ttl_s=4.0)


class Greeter(commands.Cog):
    """The host bot's own cog: the notifier must not disturb it."""

    def __init__(self) -> None:
        self.failures = 0

    @nextcord.slash_command(name="hello", description="Say hello")
    async def hello(self, interaction: nextcord.Interaction) -> None:
        await interaction.response.send_message("hello from the host bot")

    @nextcord.slash_command(name="broken", description="Fails on purpose")
    async def broken(self, interaction: nextcord.Interaction) -> None:
        raise RuntimeError("the host bot's own bug")


class HostBot(commands.Bot):
    """A bot of someone else's, with its own error handler."""

    def __init__(self) -> None:
        super().__init__(intents=nextcord.Intents.none(), guild_ready_timeout=0.05)
        self.errors_seen: list[str] = []
        self.add_cog(Greeter())

    async def on_application_command_error(
        self, interaction: nextcord.Interaction, exception: Exception
    ) -> None:
        self.errors_seen.append(str(getattr(exception, "original", exception)))


@pytest.fixture
async def host(emulator: DiscordEmulator, tmp_path: Path) -> AsyncIterator[HostBot]:
    bot = HostBot()
    bot.load_extension("notifier.ext", extras={"config": bot_settings(emulator, tmp_path / "data")})
    try:
        async with await connect_client(bot, emulator):
            yield bot
    finally:
        if not bot.is_closed():
            await bot.close()


def _notifier(bot: commands.Bot) -> Notifier:
    found = notifier_of(bot)
    assert found is not None
    return found


def _steer(notifier: Notifier) -> SteeredWorkflow:
    steered = SteeredWorkflow()
    notifier.workflows["autointel"] = WorkflowSpec(
        name="autointel", description="steered", validate=steered.validate, run=steered.run
    )
    return steered


@TTL
async def test_a_plain_bot_gets_the_whole_ladder_from_the_extension(
    emulator: DiscordEmulator, host: HostBot
) -> None:
    notifier = _notifier(host)
    assert getattr(host, "notifier") is notifier  # noqa: B009 - the name the README promises
    assert not isinstance(host, Notifier)
    registered = {command.name for command in emulator.commands}
    assert {"hello", "autointel", "retrieve_results", "workflow", "notifier"} <= registered

    # The host's own command still answers.
    hello = await emulator.trigger_command("hello", {}, user="bob")
    assert "hello from the host bot" in text_of(await hello.wait_for_message(timeout_s=10))

    # A workflow that outlasts its token: hand-off, then the result in the channel.
    steered = _steer(notifier)
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    handoff = await handle.wait_for_message(lambda m: "Still working" in m.content, timeout_s=10)
    assert f"<#{emulator.channel_id}>" in handoff.content
    handle.expire()
    steered.release.set()
    await emulator.wait_for_channel_message(
        predicate=lambda m: "Steered result" in text_of(m) and m.interaction_id is None,
        timeout_s=10,
    )
    (record,) = await notifier.store.search(ResultQuery())
    assert record.status is WorkflowStatus.COMPLETED

    async def delivered_via() -> str | None:
        stored = await notifier.store.get(record.workflow_id)
        return stored.delivered_via if stored is not None else None

    await wait_until(delivered_via, what="the delivery mark")
    assert await delivered_via() == "channel"

    # Retrievable through the notifier's command on the host bot.
    retrieval = await emulator.trigger_command(
        "retrieve_results", {"workflow_id": record.workflow_id}, user="alice"
    )
    shown = await retrieval.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=10)
    assert shown is not None


async def test_the_session_safety_is_installed_on_the_host_bot(
    emulator: DiscordEmulator, host: HostBot
) -> None:
    """What NotifierBot's overrides did, the extension installs: a closed HTTP session and a
    dropped gateway lose nothing, and the host's connect loop comes back on a fresh session."""
    steered = _steer(_notifier(host))
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    await handle.wait_for_message(lambda m: "working" in text_of(m), timeout_s=10)
    await live_session(host).close()
    await emulator.drop_gateway()
    steered.release.set()
    await handle.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=15)
    await wait_until(lambda: emulator.identify_count + emulator.resume_count >= 2)
    await wait_until(host.is_ready)
    hello = await emulator.trigger_command("hello", {}, user="bob")
    assert "hello from the host bot" in text_of(await hello.wait_for_message(timeout_s=10))


async def test_the_host_keeps_its_own_error_handling_and_unloading_removes_the_notifier(
    emulator: DiscordEmulator, host: HostBot
) -> None:
    broken = await emulator.trigger_command("broken", {}, user="bob")
    await wait_until(lambda: host.errors_seen, what="the host's error handler")
    assert host.errors_seen == ["the host bot's own bug"]
    # The notifier answers only for its own commands: nothing was sent on the host's behalf.
    assert not [m for m in broken.messages if "Something went wrong" in text_of(m)]

    notifier = _notifier(host)
    host.unload_extension("notifier.ext")

    def closed() -> bool:
        try:
            _ = notifier.store
        except RuntimeError:
            return True
        return False

    await wait_until(closed, what="the services closed")
    assert notifier_of(host) is None
    assert not hasattr(host, "notifier")
    names = {command.name for command in host.get_all_application_commands()}
    assert "hello" in names
    assert not names & {"autointel", "retrieve_results", "workflow", "notifier"}


def test_a_bad_config_fails_the_load_and_leaves_the_bot_untouched(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("runner:\n  max_per_user: none\n")
    bot = HostBot()
    with pytest.raises(commands.ExtensionFailed) as failed:
        bot.load_extension("notifier.ext", extras={"config": str(config)})
    assert "runner.max_per_user" in str(failed.value)
    assert notifier_of(bot) is None
    assert {c.name for c in bot.get_all_application_commands()} == {"hello", "broken"}
