"""Whether an interaction can still be used, and what a failed Discord call means.

Theory of operation
-------------------
An interaction token lives `discord.interaction_ttl` seconds (15 minutes on Discord) from the moment
Discord created the interaction. Calls made with a dead token are not merely useless: Discord bans an
IP for a while after 10,000 responses of 401/403/429 in 10 minutes. So the token's life is tracked
by an `InteractionLease` and *no call is made with a token known to be expired* — the lease refuses
before the request is built, and the first 401/404 from the webhook retires it for good.

The seed's `RuntimeError: Session is closed` came from nextcord's `Interaction` keeping the aiohttp
session it was created with (and caching `followup` on first use): once the client's session is
closed and replaced by `HTTPClient.recreate()`, every call through the old interaction fails although
its token is fine. We never call through the `Interaction` object after the initial response: every
request goes through `client.http.request`, which recreates a closed session before each call, so
the interaction webhook, the bot-token channel and DMs always ride the client's current session.

`call_discord` is the one place a Discord call is made for a workflow. It applies a timeout, retries
transient failures with backoff, retries once more when the session closed under it, and turns every
other failure into a `DiscordCallFailed` whose `kind` tells the delivery ladder what to do next.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import aiohttp
import nextcord
from loguru import logger

from ..errors import DiscordCallFailed, InteractionExpired, SessionClosed
from ..metrics import DISCORD_SESSION_CLOSED
from . import codes
from .compat import is_session_closed

__all__ = [
    "FailureKind",
    "InteractionLease",
    "call_discord",
    "classify",
]


class FailureKind(StrEnum):
    """What a failed Discord call means for the caller."""

    TOKEN_EXPIRED = "token_expired"  # 401 50027, 404 10015/10062: never use this token again
    SESSION_CLOSED = "session_closed"  # the HTTP session went away: retry on a fresh one
    TRANSIENT = "transient"  # 5xx, 429 that escaped nextcord, timeouts: retry with backoff
    MESSAGE_GONE = "message_gone"  # 10008, 30046: the message can't be edited, post a new one
    PERMANENT = "permanent"  # 403 50013/50007/50278, 400 50035, 413: this route won't work
    UNEXPECTED = "unexpected"  # not a Discord failure we know: a bug, logged with its traceback


_TOKEN_DEAD_CODES: Final = frozenset(
    {codes.INVALID_WEBHOOK_TOKEN, codes.UNKNOWN_WEBHOOK, codes.UNKNOWN_INTERACTION}
)
_MESSAGE_GONE_CODES: Final = frozenset({codes.UNKNOWN_MESSAGE, codes.TOO_MANY_EDITS_OLD_MESSAGE})


def classify(exc: BaseException) -> FailureKind:
    """Map an exception raised by a Discord call to what the ladder should do about it."""
    if isinstance(exc, nextcord.HTTPException):
        status, code = exc.status, exc.code
        if code in _TOKEN_DEAD_CODES and status in (401, 404):
            return FailureKind.TOKEN_EXPIRED
        if code in _MESSAGE_GONE_CODES:
            return FailureKind.MESSAGE_GONE
        if status >= 500 or status == 429:
            return FailureKind.TRANSIENT
        return FailureKind.PERMANENT
    if is_session_closed(exc):
        return FailureKind.SESSION_CLOSED
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        return FailureKind.SESSION_CLOSED
    if isinstance(exc, TimeoutError | aiohttp.ClientPayloadError):
        return FailureKind.TRANSIENT
    return FailureKind.UNEXPECTED


@dataclass(slots=True)
class InteractionLease:
    """The remaining life of one interaction token.

    `created_at` is when Discord created the interaction (its snowflake time), not when we saw it:
    the token's clock started there. `safety_margin_s` keeps us from starting a call that could land
    after expiry; `handoff_before_s` is when the ladder moves on while the token still works.
    """

    created_at: float
    ttl_s: float
    safety_margin_s: float = 5.0
    handoff_before_s: float = 60.0
    clock: Callable[[], float] = time.time
    retired_reason: str | None = field(default=None)

    def remaining_s(self) -> float:
        return self.created_at + self.ttl_s - self.clock()

    @property
    def usable(self) -> bool:
        """True while a call with this token can still land before it expires."""
        return self.retired_reason is None and self.remaining_s() > self.safety_margin_s

    @property
    def handoff_due(self) -> bool:
        """True once the ladder should hand off (or has had to: the token is no longer usable)."""
        return not self.usable or self.remaining_s() <= self.handoff_before_s + self.safety_margin_s

    def retire(self, reason: str) -> None:
        """Never use this token again (it answered 401/404, or the ladder handed off)."""
        if self.retired_reason is None:
            self.retired_reason = reason

    def check(self) -> None:
        if self.retired_reason is not None:
            raise InteractionExpired(
                FailureKind.TOKEN_EXPIRED, f"interaction token retired: {self.retired_reason}"
            )
        if not self.usable:
            self.retire("expired")
            raise InteractionExpired(
                FailureKind.TOKEN_EXPIRED,
                f"interaction token expires in {self.remaining_s():.1f}s; not calling with it",
            )


def _failure(kind: FailureKind, exc: BaseException) -> DiscordCallFailed:
    status = exc.status if isinstance(exc, nextcord.HTTPException) else None
    code = exc.code if isinstance(exc, nextcord.HTTPException) else None
    text = f"{type(exc).__name__}: {exc}".strip()
    if kind is FailureKind.TOKEN_EXPIRED:
        return InteractionExpired(kind, text, status=status, code=code)
    if kind is FailureKind.SESSION_CLOSED:
        return SessionClosed(kind, text, status=status, code=code)
    return DiscordCallFailed(kind, text, status=status, code=code)


async def call_discord[T](
    operation: Callable[[], Awaitable[T]],
    *,
    stage: str,
    lease: InteractionLease | None = None,
    attempts: int = 3,
    timeout_s: float = 20.0,
    backoff_s: float = 0.5,
) -> T:
    """Make one Discord call for a workflow, or raise `DiscordCallFailed` saying why not.

    `lease` is given when the call uses the interaction token: it is checked before every attempt
    and retired on a token failure, so a dead token is never sent twice.
    """
    last: DiscordCallFailed | None = None
    for attempt in range(1, attempts + 1):
        if lease is not None:
            lease.check()
        try:
            async with asyncio.timeout(timeout_s):
                return await operation()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = classify(exc)
            last = _failure(kind, exc)
            if kind is FailureKind.TOKEN_EXPIRED:
                if lease is not None:
                    lease.retire(f"Discord answered {last.status} code {last.code}")
                raise last from exc
            if kind is FailureKind.UNEXPECTED:
                logger.opt(exception=exc).error("unexpected error from a Discord call at {}", stage)
                raise last from exc
            if kind is FailureKind.SESSION_CLOSED:
                DISCORD_SESSION_CLOSED.labels(stage=stage).inc()
            if kind not in (FailureKind.SESSION_CLOSED, FailureKind.TRANSIENT):
                raise last from exc
            if attempt == attempts:
                raise last from exc
            delay = backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())
            logger.warning(
                "Discord call at {} failed ({}: {}), retrying in {:.2f}s",
                stage,
                kind.value,
                last,
                delay,
            )
            await asyncio.sleep(delay)
    assert last is not None  # the loop either returned or raised
    raise last
