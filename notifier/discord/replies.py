"""Initial interaction responses for commands, done right once.

Discord allows 3 s for the first response; 10062 (unknown interaction) also happens at random on
fast replies, so the acknowledgement is retried once, never in a loop. A response whose answer was
lost with the connection (the HTTP session closed under it, a dropped connection) may have landed:
it is retried once on the client's fresh session, and 40060 (already acknowledged) then means the
first one did.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp
import nextcord
from loguru import logger

from ..metrics import DISCORD_SESSION_CLOSED
from . import codes
from .compat import recreate_session
from .session import FailureKind, classify

__all__ = ["TRANSPORT_ERRORS", "attachment_limit", "defer", "reply_ephemeral"]

_CONNECTION_LOST = frozenset({FailureKind.SESSION_CLOSED, FailureKind.TRANSIENT})
# What a lost connection raises: aiohttp's errors, "Session is closed", a timeout (`classify`
# tells them from other errors of these types, which are re-raised).
TRANSPORT_ERRORS: Final = (aiohttp.ClientError, ConnectionError, RuntimeError, TimeoutError)


def _connection_lost(exc: BaseException) -> bool:
    return not isinstance(exc, nextcord.HTTPException) and classify(exc) in _CONNECTION_LOST


async def _retry_once(interaction: nextcord.Interaction, action: Any) -> bool:
    for attempt in (1, 2):
        try:
            await action()
            return True
        except nextcord.NotFound as exc:
            if exc.code != codes.UNKNOWN_INTERACTION or attempt == 2:
                logger.warning("initial response failed: {} (code {})", exc.status, exc.code)
                return False
        except nextcord.HTTPException as exc:
            if attempt == 2 and exc.code == codes.INTERACTION_ALREADY_ACKNOWLEDGED:
                return True  # the first try landed; only its answer was lost
            logger.warning("initial response failed: {} (code {})", exc.status, exc.code)
            return False
        except TRANSPORT_ERRORS as exc:
            if not _connection_lost(exc):
                raise
            if classify(exc) is FailureKind.SESSION_CLOSED:
                DISCORD_SESSION_CLOSED.labels(stage="initial_response").inc()
            logger.warning(
                "initial response: the connection was lost ({}: {}){}",
                type(exc).__name__,
                exc,
                "; retrying once on a fresh session" if attempt == 1 else "",
            )
            if attempt == 2:
                return False
            await recreate_session(interaction.client)
    return False


async def defer(interaction: nextcord.Interaction, *, ephemeral: bool) -> bool:
    return await _retry_once(interaction, lambda: interaction.response.defer(ephemeral=ephemeral))


async def reply_ephemeral(interaction: nextcord.Interaction, text: str) -> bool:
    """An ephemeral answer, as the initial response or as a followup when already acknowledged."""
    if interaction.response.is_done():
        try:
            await interaction.followup.send(text, ephemeral=True)
            return True
        except nextcord.HTTPException as exc:
            logger.warning("ephemeral followup failed: {} (code {})", exc.status, exc.code)
            return False
        except TRANSPORT_ERRORS as exc:
            if not _connection_lost(exc):
                raise
            logger.warning("ephemeral followup lost with the connection: {}", exc)
            return False
    return await _retry_once(
        interaction, lambda: interaction.response.send_message(text, ephemeral=True)
    )


def attachment_limit(interaction: nextcord.Interaction) -> int:
    """The per-file upload limit Discord gave with this interaction (see compat.TrackedInteraction)."""
    limit = getattr(interaction, "attachment_size_limit", None)
    return int(limit) if limit else codes.ATTACHMENT_SIZE_DEFAULT_BYTES
