"""README, "In a bot you already have": its line, as written, loads the notifier into a plain
nextcord bot with a config.yaml in the working folder (pointing at the emulator here)."""

from __future__ import annotations

from pathlib import Path

import nextcord
import pytest
import yaml
from nextcord.ext import commands

from notifier.ext import notifier_of
from notifier.testing import DiscordEmulator
from notifier.testing.nextcord_support import connect_client

from .readme import block


async def test_the_readme_line_loads_it_into_an_existing_bot(
    emulator: DiscordEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = block("python", 'bot.load_extension("notifier.ext"')
    config = {
        "discord": {"token": emulator.bot_token, "api_base": emulator.api_base},
        "storage": {"path": str(tmp_path / "data")},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    bot = commands.Bot(intents=nextcord.Intents.none(), guild_ready_timeout=0.05)
    exec(readme.text.splitlines()[0], {"bot": bot})  # the README's own line
    try:
        async with await connect_client(bot, emulator):
            names = {command.name for command in emulator.commands}
            assert {"autointel", "retrieve_results", "workflow", "results"} <= names
            notifier = notifier_of(bot)
            assert notifier is not None and notifier.config_path == Path("config.yaml")
            assert getattr(bot, "notifier") is notifier  # noqa: B009 - the README's name
    finally:
        if not bot.is_closed():
            await bot.close()
