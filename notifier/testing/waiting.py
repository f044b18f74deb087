"""Event-driven waiting on emulator state (no sleep-polling).

Every mutation calls :meth:`ChangeFeed.notify`; waiters re-check their
condition after each notification and give up with a ``TimeoutError`` that
says what they were waiting for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ChangeFeed:
    """Broadcasts "something changed" to all current waiters."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.version = 0

    def notify(self) -> None:
        """Wake every waiter; callable from synchronous code."""
        self.version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for(
        self, check: Callable[[], T | None], timeout_s: float, description: str
    ) -> T:
        """Return the first non-``None`` result of ``check``, re-evaluated on each change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout_s}s waiting for {description}")
            event = self._event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue

    async def wait_until(
        self, predicate: Callable[[], bool], timeout_s: float, description: str
    ) -> None:
        """Wait until ``predicate()`` is true."""
        await self.wait_for(lambda: True if predicate() else None, timeout_s, description)
