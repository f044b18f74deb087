"""Waiting for a condition that lives outside the emulator: a store row, a counter, a sink.

The emulator announces its own changes, so waits on Discord state are event-driven
(`InteractionHandle.wait_for_message`, `DiscordEmulator.wait_for_channel_message`). Nothing
announces that the bot wrote a row or a sink got a request, so `wait_until` polls. Its timeout
only keeps a broken test from hanging the suite; it never asserts how fast anything was.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["DEFAULT_TIMEOUT_S", "Predicate", "wait_until"]

DEFAULT_TIMEOUT_S = 30.0

# A condition to poll: a plain function or a coroutine function, any truthy result counts.
Predicate = Callable[[], object] | Callable[[], Awaitable[object]]


def _describe(predicate: Predicate, what: str | None) -> str:
    """`what`, or the predicate's name when it has one worth showing."""
    if what:
        return what
    name = getattr(predicate, "__qualname__", "")
    return name if name and "<lambda>" not in name else repr(predicate)


async def wait_until(
    predicate: Predicate,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str | None = None,
    interval_s: float = 0.05,
) -> None:
    """Return once `predicate()` (sync or async) is truthy, polling every `interval_s`.

    Raises TimeoutError naming `what` (default: the predicate's name) after `timeout_s`. The
    predicate is always checked once more at the deadline, so a slow poll cannot miss it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(
                f"timed out after {timeout_s:g}s waiting for {_describe(predicate, what)}"
            )
        await asyncio.sleep(min(interval_s, remaining))
