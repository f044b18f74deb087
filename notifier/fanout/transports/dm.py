"""A Discord user reached by DM through the running bot (`PluginContext.send_dm`).

A user who cannot be DMed (Discord's "cannot send messages to this user", "no mutual guilds") is a
permanent failure for that user, as is any other 4xx but 408/429; anything else is retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from dataclasses import dataclass
from typing import Any, Final

from ...discord import codes
from ...events import Notice
from ..plugin import PermanentSendError, PluginContext, RenderedNotice, TargetResult, TargetStatus
from .common import _result, discord_embed

__all__ = ["PERMANENT_DM_CODES", "DMTarget", "accepts_nonce", "dm_nonce"]

# Discord accepts a nonce of at most 25 characters.
DM_NONCE_CHARS: Final = 25
# Discord JSON error codes that mean "never going to work for this target".
PERMANENT_DM_CODES: Final = frozenset({codes.CANNOT_DM_USER, codes.NO_MUTUAL_GUILDS})


def dm_nonce(idempotency_key: str, user_id: int) -> str:
    """A Discord message nonce (at most 25 characters) for one notice to one user, the same on
    every attempt: with `enforce_nonce` Discord returns the first message instead of posting a
    duplicate. Per user, because Discord dedupes on (author, nonce), not per channel."""
    return hashlib.sha256(f"{idempotency_key}:{user_id}".encode()).hexdigest()[:DM_NONCE_CHARS]


def accepts_nonce(func: Any) -> bool:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "nonce" or p.kind is p.VAR_KEYWORD for p in parameters)


@dataclass(frozen=True, slots=True)
class DMTarget:
    """A Discord user reached by DM through the running bot (`PluginContext.send_dm`).

    If `send_dm` takes a `nonce` keyword, it gets `dm_nonce(...)`: stable across retries and
    restarts, so the bot can send it with `enforce_nonce: true` and a resend after a crash between
    send and mark shows up once."""

    user_id: int
    embed: bool = True

    @property
    def target_id(self) -> str:
        return f"dm:{self.user_id}"

    @property
    def display(self) -> str:
        return f"dm:{self.user_id}"

    def secrets(self) -> list[str]:
        return []

    async def send(
        self, context: PluginContext, notice: Notice, message: RenderedNotice, timeout_s: float
    ) -> TargetResult:
        if context.send_dm is None:
            return _result(self, TargetStatus.FAILED, "no bot is running to send DMs (send_dm)")
        embed: dict[str, Any] | None = None
        if self.embed:
            content = message.title[: codes.CONTENT_MAX]
            embed = discord_embed(notice, message)
            del embed["title"]  # already the content line
        else:
            content = f"{message.title}\n{message.body}"[: codes.CONTENT_MAX]
        send_dm: Any = context.send_dm
        extra: dict[str, str] = {}
        if message.idempotency_key and accepts_nonce(send_dm):
            extra["nonce"] = dm_nonce(message.idempotency_key, self.user_id)
        try:
            async with asyncio.timeout(timeout_s):
                await send_dm(self.user_id, content, embed, **extra)
        except TimeoutError:
            return _result(
                self, TargetStatus.TIMEOUT, f"no answer within {timeout_s:.1f}s (outcome unknown)"
            )
        except PermanentSendError as exc:
            return _result(self, TargetStatus.FAILED, exc.message, permanent=True)
        except Exception as exc:  # noqa: BLE001 - the bot's send_dm may raise anything; classify it
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            permanent = code in PERMANENT_DM_CODES or (
                isinstance(status, int) and 400 <= status < 500 and status not in {408, 429}
            )
            detail = f"{type(exc).__name__}: {exc}" + (f" (code {code})" if code else "")
            return _result(self, TargetStatus.FAILED, detail, permanent=permanent)
        return _result(self, TargetStatus.SENT)
