"""The project's own bot, run against the emulator: settings, start-up and a clean stop.

Used by the `bot` pytest fixture and by the demo (`bot.py` without a token).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .emulator import DiscordEmulator
from .nextcord_support import connect_client

if TYPE_CHECKING:
    from ..app import NotifierBot
    from ..config import Settings

__all__ = ["bot_settings", "running_bot"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def bot_settings(
    emulator: DiscordEmulator, data_dir: Path, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings for a bot talking to `emulator`, storing under `data_dir`.

    The interaction TTL follows the emulator's; hand-off and safety margins shrink with it so a
    test with a TTL of a few seconds still exercises the whole ladder.
    """
    from ..config import Settings

    ttl_s = emulator.config.interaction_ttl_s
    base: dict[str, Any] = {
        "discord": {
            "token": emulator.bot_token,
            "api_base": emulator.api_base,
            "interaction_ttl": ttl_s,
            "handoff_before": min(60.0, ttl_s * 0.3),
            "safety_margin": min(5.0, ttl_s * 0.1),
            "admin_role_ids": [emulator.roles["admin"].id] if "admin" in emulator.roles else [],
        },
        "storage": {"path": str(data_dir)},
        "progress": {"min_interval": 0.2},
        "autointel": {"allow_private_networks": True},
        "fanout": {"plugin_dirs": [str(PROJECT_ROOT / "plugins")], "backoff_initial": 0.2},
        "runner": {"shutdown_grace": 5.0},
    }
    return Settings.model_validate(_merge(base, overrides or {}))


@contextlib.asynccontextmanager
async def running_bot(
    emulator: DiscordEmulator, settings: Settings, *, config_path: Path | None = None
) -> AsyncIterator[NotifierBot]:
    """Open the bot's services, connect it to the emulator, and close it all afterwards."""
    from ..app import NotifierBot

    bot = NotifierBot(settings, config_path=config_path, guild_ready_timeout_s=0.05)
    await bot.open()
    try:
        async with await connect_client(bot, emulator):
            yield bot
    finally:
        if not bot.is_closed():
            await bot.close()
