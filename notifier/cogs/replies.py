"""Initial interaction responses for commands, done right once.

Discord allows 3 s for the first response; 10062 (unknown interaction) also happens at random on
fast replies, so the acknowledgement is retried once, never in a loop.
"""

from __future__ import annotations

from typing import Any

import nextcord
from loguru import logger

from .. import discord_codes as codes

__all__ = ["attachment_limit", "defer", "reply_ephemeral"]


async def _retry_once(action: Any) -> bool:
    for attempt in (1, 2):
        try:
            await action()
            return True
        except nextcord.NotFound as exc:
            if exc.code != codes.UNKNOWN_INTERACTION or attempt == 2:
                logger.warning("initial response failed: {} (code {})", exc.status, exc.code)
                return False
        except nextcord.HTTPException as exc:
            logger.warning("initial response failed: {} (code {})", exc.status, exc.code)
            return False
    return False


async def defer(interaction: nextcord.Interaction, *, ephemeral: bool) -> bool:
    return await _retry_once(lambda: interaction.response.defer(ephemeral=ephemeral))


async def reply_ephemeral(interaction: nextcord.Interaction, text: str) -> bool:
    """An ephemeral answer, as the initial response or as a followup when already acknowledged."""
    if interaction.response.is_done():
        try:
            await interaction.followup.send(text, ephemeral=True)
            return True
        except nextcord.HTTPException as exc:
            logger.warning("ephemeral followup failed: {} (code {})", exc.status, exc.code)
            return False
    return await _retry_once(lambda: interaction.response.send_message(text, ephemeral=True))


def attachment_limit(interaction: nextcord.Interaction) -> int:
    """The per-file upload limit Discord gave with this interaction (see TrackedInteraction)."""
    limit = getattr(interaction, "attachment_size_limit", None)
    return int(limit) if limit else codes.ATTACHMENT_SIZE_DEFAULT_BYTES
