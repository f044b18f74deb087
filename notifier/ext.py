"""The notifier as a nextcord extension, for a bot that already exists.

    bot.load_extension("notifier.ext", extras={"config": "config.yaml"})   # before bot.run()

or, from a coroutine with the loop running, ``await notifier.setup(bot, "config.yaml")``. Either
adds the notifier's commands, store, runner and fanout to any `commands.Bot` or
`AutoShardedBot` (see `notifier.app.Notifier.attach` for what is installed, and why); the
services open with the bot's first connect, or at once with `setup`. The config is a path, a
`Settings`, or nothing: then ``$NOTIFIER_CONFIG``, else ``./config.yaml``, else the built-in
defaults. The attached `Notifier` is `bot.notifier` afterwards (unless the bot already uses
that name: then `notifier.ext.notifier_of(bot)` finds it; nextcord runs this module afresh on
each load, so it keeps no state of its own).

Unloading the extension (`bot.unload_extension("notifier.ext")`) closes the services and removes
what was installed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from nextcord.ext import commands

from .app import Notifier
from .config import Settings, load_config

__all__ = ["notifier_of", "setup", "setup_async", "teardown"]

_ATTRIBUTE = "notifier"


def _settings(config: str | Path | Settings | None) -> tuple[Settings, Path | None]:
    if isinstance(config, Settings):
        return config, None
    if config is None:
        named = os.environ.get("NOTIFIER_CONFIG")
        if named:
            config = named
        elif Path("config.yaml").is_file():
            config = "config.yaml"
        else:
            return Settings(), None
    path = Path(config)
    return load_config(path), path


def _attach(bot: commands.Bot, config: str | Path | Settings | None) -> Notifier:
    if Notifier.of(bot) is not None:
        raise RuntimeError("a notifier is already attached to this bot")
    settings, path = _settings(config)
    notifier = Notifier(settings, config_path=path)
    notifier.attach(bot)
    if not hasattr(bot, _ATTRIBUTE):
        setattr(bot, _ATTRIBUTE, notifier)
    return notifier


def setup(bot: commands.Bot, config: str | Path | Settings | None = None) -> None:
    """nextcord's extension entry point (`load_extension(..., extras={"config": ...})`): attach
    the notifier; its services open with the bot's first connect. A bad config raises
    ConfigError (nextcord wraps it in ExtensionFailed) and leaves the bot untouched."""
    _attach(bot, config)


async def setup_async(bot: commands.Bot, config: str | Path | Settings | None = None) -> Notifier:
    """Attach the notifier and open its services now (for a bot whose loop is running); a
    start-up failure raises its one-line NotifierError and leaves the bot as it was."""
    notifier = _attach(bot, config)
    try:
        await notifier.open()
    except BaseException:
        _detach(bot)
        raise
    return notifier


def notifier_of(bot: commands.Bot) -> Notifier | None:
    """The notifier attached to `bot`, if any."""
    return Notifier.of(bot)


def _detach(bot: commands.Bot) -> Notifier | None:
    notifier = Notifier.of(bot)
    if notifier is None:
        return None
    notifier.detach()
    if getattr(bot, _ATTRIBUTE, None) is notifier:
        delattr(bot, _ATTRIBUTE)
    return notifier


def teardown(bot: commands.Bot) -> None:
    """nextcord's unload hook: remove what was installed and close the services (in the
    background when the loop runs: nextcord calls this synchronously)."""
    notifier = _detach(bot)
    if notifier is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # never opened without a loop: nothing to close
    task = loop.create_task(notifier.close(), name="notifier-teardown")
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()
