"""The demo's time scale (kept apart from `notifier.demo` so `bot.py` can read it cheaply)."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_TTL_S", "MAX_TTL_S", "MIN_TTL_S", "SITE_PAGES", "DemoPlan"]

DEFAULT_TTL_S: Final = 20.0
MIN_TTL_S: Final = 5.0
MAX_TTL_S: Final = 3600.0
SITE_PAGES: Final = 15  # autointel's pages for depth:deep


class DemoPlan:
    """The story's time scale, all derived from the token lifetime."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S) -> None:
        if ttl_s < MIN_TTL_S:
            raise ValueError(f"the demo's token lifetime must be at least {MIN_TTL_S:g} s")
        self.ttl_s = ttl_s
        # The hand-off comes a quarter of the lifetime before expiry (Discord: 60 s of 900 s).
        self.handoff_before_s = round(ttl_s * 0.25, 2)
        self.safety_margin_s = round(ttl_s * 0.05, 2)
        # The analysis takes 1.5 lifetimes: it must outlast the token.
        self.site_delay_s = round(ttl_s * 1.5 / SITE_PAGES, 3)
        # The longest any single step may take before the story is declared stuck.
        self.step_limit_s = ttl_s * 3 + 30
