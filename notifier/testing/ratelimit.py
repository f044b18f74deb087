"""Per-route rate-limit buckets and the global limit, with Discord's headers.

Each rule is a fixed window per (bucket, major parameter): Discord counts
message creates per channel, webhook executions per webhook. Every answer
on a limited route carries ``X-RateLimit-*`` headers (nextcord schedules
itself from them) and an exceeded bucket answers 429 with ``retry_after``
and the ``Via`` header, without which nextcord treats the 429 as a
Cloudflare ban and raises instead of retrying.

The global limit (`GlobalLimiter`) is Discord's 50 requests per second per
bot: it counts every bot-token request, whatever the route, connection or
process it comes from (the emulator sees one token, however many processes
share it). Discord does not say how it counts that second, so the emulator
takes the strictest reading a client must survive: at most ``limit``
accepted requests in *any* window of ``per_s`` seconds (a sliding window),
which a client also meets under any fixed-window count. Requests refused
with a 429 do not count. Interaction callbacks and webhook calls carry no
bot token and are exempt, as on Discord.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class RateLimitRule:
    """At most ``limit`` requests per ``per_s`` seconds in one bucket."""

    limit: int
    per_s: float


# Discord's global limit: 50 requests per second per bot token.
GLOBAL_RATE_LIMIT: Final = RateLimitRule(50, 1.0)
# Discord's edge adds it to a 429 it means; nextcord retries only a 429 that carries it.
_VIA: Final = "1.1 google"
# Shortest retry_after answered: nextcord reads 0 as "none given" and falls back to the header.
_MIN_RETRY_AFTER_S: Final = 0.001


def default_rate_limits() -> dict[str, RateLimitRule | None]:
    """Limits observed on Discord for the routes a notifier bot uses.

    Routes whose group is absent (or mapped to ``None``) are unlimited, which
    is how the interaction callback behaves.
    """
    return {
        "message_create": RateLimitRule(5, 5.0),
        "message_edit": RateLimitRule(5, 5.0),
        "message_delete": RateLimitRule(5, 1.0),
        "webhook_execute": RateLimitRule(5, 2.0),
        "webhook_message": RateLimitRule(5, 2.0),
    }


@dataclass(frozen=True)
class Verdict:
    """Whether a request may proceed, and the headers to answer with."""

    allowed: bool
    headers: dict[str, str]
    retry_after: float = 0.0


@dataclass
class _Window:
    reset_at: float
    used: int


def bucket_hash(group: str) -> str:
    """Opaque bucket id like Discord's (shared by all channels of a route)."""
    return hashlib.sha1(group.encode()).hexdigest()[:16]


class RateLimiter:
    """Counts requests per bucket; rules are re-read on every call so tests can tune them."""

    def __init__(
        self,
        rules: Callable[[], Mapping[str, RateLimitRule | None]],
        enabled: Callable[[], bool],
        now: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._enabled = enabled
        self._now = now
        self._windows: dict[tuple[str, str], _Window] = {}

    def check(self, group: str | None, major: str) -> Verdict | None:
        """Consume one request from the bucket; ``None`` when the route is unlimited."""
        if group is None or not self._enabled():
            return None
        rule = self._rules().get(group)
        if rule is None:
            return None
        now = self._now()
        key = (group, major)
        window = self._windows.get(key)
        if window is None or window.reset_at <= now:
            window = _Window(reset_at=now + rule.per_s, used=0)
            self._windows[key] = window
        reset_after = max(window.reset_at - now, 0.0)
        headers = {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Reset": f"{window.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash(group),
        }
        if window.used >= rule.limit:
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Scope"] = "user"
            headers["Retry-After"] = str(max(1, math.ceil(reset_after)))
            headers["Via"] = _VIA
            return Verdict(allowed=False, headers=headers, retry_after=round(reset_after, 3))
        window.used += 1
        headers["X-RateLimit-Remaining"] = str(rule.limit - window.used)
        return Verdict(allowed=True, headers=headers)

    def reset(self) -> None:
        """Forget all counters (e.g. between phases of a test)."""
        self._windows.clear()


class GlobalLimiter:
    """Discord's global limit: at most ``limit`` requests per ``per_s`` seconds for each bot
    token, counted over every connection, in any window of that length (module docstring).

    The rule and the switch are re-read on every call, like `RateLimiter`'s, so a test may change
    ``EmulatorConfig.global_rate_limit`` mid-run; ``now`` is the emulator's clock, so
    ``advance_time`` also moves requests out of the window.
    """

    def __init__(
        self,
        rule: Callable[[], RateLimitRule | None],
        enabled: Callable[[], bool],
        now: Callable[[], float],
    ) -> None:
        self._rule = rule
        self._enabled = enabled
        self._now = now
        self._accepted: dict[str, deque[float]] = {}

    def check(self, token: str) -> Verdict | None:
        """Count one request made with `token` (the Authorization header); ``None`` when no
        global limit applies, else whether it may proceed (a refusal carries Discord's global
        429 headers)."""
        rule = self._rule()
        if rule is None or not self._enabled():
            return None
        now = self._now()
        accepted = self._accepted.setdefault(token, deque())
        while accepted and accepted[0] <= now - rule.per_s:
            accepted.popleft()
        if len(accepted) < rule.limit:
            accepted.append(now)
            return Verdict(allowed=True, headers={})
        # Rounded up to the millisecond: a client that waits exactly this long gets through.
        retry_after = max(
            math.ceil((accepted[0] + rule.per_s - now) * 1000) / 1000, _MIN_RETRY_AFTER_S
        )
        headers = {
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "Via": _VIA,
        }
        return Verdict(allowed=False, headers=headers, retry_after=retry_after)

    def reset(self) -> None:
        """Forget every token's recent requests."""
        self._accepted.clear()
