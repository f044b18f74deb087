"""One asyncio lock per workflow id, so that a finish, a retry and reconciliation never work on the
same result at once, while different results proceed in parallel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["KeyedLocks"]


@dataclass(slots=True)
class _Slot:
    lock: asyncio.Lock
    users: int = 0


class KeyedLocks:
    """Locks created on first use and dropped when nobody holds or waits for them, so a long-lived
    bot does not keep one per workflow it ever ran."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        slot = self._slots.setdefault(key, _Slot(asyncio.Lock()))
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[key]

    def busy(self) -> set[str]:
        """Keys held or waited for right now."""
        return set(self._slots)
