"""Discord snowflake ids and timestamps.

Ids are real time-based snowflakes (not counters) because nextcord derives
``created_at``/``Interaction.expires_at`` from them, and because
``nextcord.Webhook.from_url`` only accepts 17-20 digit webhook ids.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

DISCORD_EPOCH_MS = 1_420_070_400_000


class SnowflakeFactory:
    """Hands out strictly increasing snowflakes derived from the wall clock."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        """Return a new id, unique for this factory and ordered by creation."""
        elapsed_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = elapsed_ms << 22
        if candidate <= self._last:
            candidate = self._last + 1
        self._last = candidate
        return candidate


def utcnow() -> datetime:
    """Current time as an aware UTC datetime (what Discord timestamps carry)."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """Format a timestamp the way Discord's JSON does (ISO 8601 with offset)."""
    return None if moment is None else moment.isoformat()
