"""Per-route rate-limit buckets with Discord's headers.

Each rule is a fixed window per (bucket, major parameter): Discord counts
message creates per channel, webhook executions per webhook. Every answer
on a limited route carries ``X-RateLimit-*`` headers (nextcord schedules
itself from them) and an exceeded bucket answers 429 with ``retry_after``
and the ``Via`` header, without which nextcord treats the 429 as a
Cloudflare ban and raises instead of retrying.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimitRule:
    """At most ``limit`` requests per ``per_s`` seconds in one bucket."""

    limit: int
    per_s: float


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
            headers["Via"] = "1.1 google"
            return Verdict(allowed=False, headers=headers, retry_after=round(reset_after, 3))
        window.used += 1
        headers["X-RateLimit-Remaining"] = str(rule.limit - window.used)
        return Verdict(allowed=True, headers=headers)

    def reset(self) -> None:
        """Forget all counters (e.g. between phases of a test)."""
        self._windows.clear()
