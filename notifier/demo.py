"""The demo: `bot.py` with no Discord token runs the real bot against the embedded emulator.

Everything is on 127.0.0.1: the emulator (Discord's REST API and gateway), the bot, and the bot's
store under a temporary folder unless `storage.path` is set explicitly.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
from pathlib import Path

from loguru import logger
from pydantic import SecretStr

from .config import Settings
from .testing import DiscordEmulator, EmulatorConfig
from .testing.nextcord_support import patch_route_base
from .testing.project_bot import running_bot

__all__ = ["run_demo"]


async def run_demo(settings: Settings, config_path: Path | None, *, keep_running: bool) -> int:
    """Start the emulator and the bot; log readiness; stay up if asked to."""
    config = EmulatorConfig(interaction_ttl_s=settings.discord.interaction_ttl)
    async with DiscordEmulator(config) as emulator:
        with patch_route_base(emulator):
            discord = settings.discord.model_copy(
                update={"token": SecretStr(emulator.bot_token), "api_base": emulator.api_base}
            )
            data_dir = Path(tempfile.mkdtemp(prefix="notifier-demo-"))
            storage = settings.storage.model_copy(update={"path": data_dir})
            demo_settings = settings.model_copy(update={"discord": discord, "storage": storage})
            logger.info("no Discord token configured: running against the embedded emulator")
            logger.info("emulator listening on {}", emulator.api_base)
            logger.info("demo results are stored under {}", data_dir)
            async with running_bot(emulator, demo_settings, config_path=config_path) as bot:
                names = sorted(c.name for c in emulator.commands)
                logger.info("bot ready as {}; commands registered: {}", bot.user, ", ".join(names))
                if keep_running:
                    logger.info("--keep-running: press Ctrl-C to stop")
                    await _wait_for_signal()
    logger.info("demo finished")
    return 0


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
