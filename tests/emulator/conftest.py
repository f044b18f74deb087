"""Fixtures for the emulator's own tests: a small real nextcord bot.

The ``discord_emulator`` fixture comes from the ``notifier.testing`` pytest
plugin. Every async test here gets a hard timeout so a hang fails the test
instead of blocking the run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nextcord
import pytest
from nextcord import Interaction, SlashOption

from notifier.testing import DiscordEmulator, EmulatorConfig, connect_client

TEST_TIMEOUT_S = 20.0
_HERE = Path(__file__).parent


def _with_timeout(
    fn: Callable[..., Awaitable[Any]], seconds: float
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(seconds):
            return await fn(*args, **kwargs)

    return wrapper


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function) or _HERE not in Path(item.path).parents:
            continue
        if inspect.iscoroutinefunction(item.obj):
            item.obj = _with_timeout(item.obj, TEST_TIMEOUT_S)


@pytest.fixture
def discord_emulator_base_config() -> EmulatorConfig:
    """Small timings so expiry and reconnect tests stay fast."""
    return EmulatorConfig(
        interaction_ttl_s=1.5,
        initial_response_deadline_s=1.0,
        heartbeat_interval_ms=500,
        attachment_size_limit=64 * 1024,
        default_timeout_s=8.0,
    )


class SampleBot(nextcord.Client):
    """A bot with a few slash commands; ``held`` receives interactions the test answers."""

    def __init__(self, guild_id: int) -> None:
        super().__init__(intents=nextcord.Intents.default(), guild_ready_timeout=0.05)
        self.held: asyncio.Queue[Interaction] = asyncio.Queue()
        self.work_interactions: list[Interaction] = []
        self._register(guild_id)

    def _register(self, guild_id: int) -> None:
        @self.slash_command(name="ping", description="Answer pong")
        async def ping(interaction: Interaction) -> None:
            await interaction.response.send_message("pong")

        @self.slash_command(name="work", description="Defer, then follow up")
        async def work(
            interaction: Interaction,
            steps: int = SlashOption(description="how many steps", required=False, default=1),
        ) -> None:
            self.work_interactions.append(interaction)
            await interaction.response.defer()
            await interaction.followup.send(f"done {steps}")

        @self.slash_command(name="hold", description="The test answers this one")
        async def hold(interaction: Interaction) -> None:
            self.held.put_nowait(interaction)

        @self.slash_command(name="workflow", description="Workflow commands", guild_ids=[guild_id])
        async def workflow(interaction: Interaction) -> None:
            """Group parent; never invoked directly."""

        @workflow.subcommand(name="status", description="Status of a run")
        async def status(
            interaction: Interaction,
            run: str = SlashOption(description="run id", autocomplete=True),
        ) -> None:
            await interaction.response.send_message(f"status of {run}", ephemeral=True)

        @status.on_autocomplete("run")
        async def run_choices(interaction: Interaction, run: str) -> None:
            runs = ["run-1", "run-2", "other"]
            await interaction.response.send_autocomplete([r for r in runs if r.startswith(run)])

        @self.slash_command(name="pages", description="A paginated result list")
        async def pages(interaction: Interaction) -> None:
            view = PagerView()
            await interaction.response.send_message("page 1", view=view)

        @self.slash_command(name="feedback", description="Opens a modal")
        async def feedback(interaction: Interaction) -> None:
            await interaction.response.send_modal(FeedbackModal())

        @self.slash_command(name="pick", description="A select menu")
        async def pick(interaction: Interaction) -> None:
            await interaction.response.send_message("pick one", view=PickView())


class PagerView(nextcord.ui.View):
    """One "next" button that edits the message to the next page."""

    def __init__(self) -> None:
        super().__init__(timeout=30)
        self.page = 1

    @nextcord.ui.button(label="Next", custom_id="pager:next")
    async def next_page(self, button: nextcord.ui.Button[Any], interaction: Interaction) -> None:
        self.page += 1
        await interaction.response.edit_message(content=f"page {self.page}", view=self)


class FeedbackModal(nextcord.ui.Modal):
    """A one-field modal that thanks the user."""

    def __init__(self) -> None:
        super().__init__("Feedback", custom_id="feedback-modal", timeout=30)
        self.comment = nextcord.ui.TextInput(label="Comment", custom_id="comment")
        self.add_item(self.comment)

    async def callback(self, interaction: Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.comment.value}")


class PickView(nextcord.ui.View):
    """A select menu that reports the choice by editing its message."""

    def __init__(self) -> None:
        super().__init__(timeout=30)

    @nextcord.ui.select(
        custom_id="pick:menu",
        options=[
            nextcord.SelectOption(label="A", value="a"),
            nextcord.SelectOption(label="B", value="b"),
        ],
    )
    async def chosen(self, select: nextcord.ui.Select[Any], interaction: Interaction) -> None:
        await interaction.response.edit_message(content=f"picked {select.values[0]}", view=None)


@pytest.fixture
async def sample_bot(discord_emulator: DiscordEmulator) -> AsyncIterator[SampleBot]:
    """A connected SampleBot whose commands are registered."""
    bot = SampleBot(discord_emulator.guild_id)
    connected = await connect_client(bot, discord_emulator)
    try:
        yield bot
    finally:
        await connected.close()
