"""Coalescing progress reports into at most one edit per interval.

A workflow may report progress hundreds of times a second; Discord allows about five edits of one
message per five seconds before answering 429. `ProgressThrottle` keeps only the latest state and
hands it to its sink at most once per `min_interval_s`; `finish` always delivers the final state.
The sink is awaited in a background task, so `report` is sync, cheap and never blocks the workflow.

Discord also limits a bot to 50 requests a second in all (interaction webhooks excepted), and a
bot that keeps answering 429 gets its IP banned. Progress edits that go through the bot token (the
channel and DM rungs, after a hand-off) therefore also wait for a turn from one `AsyncLimiter`
shared by every workflow: with thousands of workflows running, each status is edited less often,
and results, hand-offs and commands keep the rest of the global budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiolimiter import AsyncLimiter
from loguru import logger

from ..records import ProgressState

__all__ = ["ProgressThrottle"]


class ProgressThrottle:
    """Latest-wins progress, flushed to `sink` at most once per `min_interval_s`."""

    def __init__(
        self,
        sink: Callable[[ProgressState], Awaitable[None]],
        *,
        min_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        budget: AsyncLimiter | None = None,
        needs_budget: Callable[[], bool] = lambda: True,
    ) -> None:
        """`budget`: a limiter shared with other workflows, taken before each flush for which
        `needs_budget()` is true (the final state in `finish` does not wait for it)."""
        self._sink = sink
        self._budget = budget
        self._needs_budget = needs_budget
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._latest: ProgressState | None = None
        self._sent: ProgressState | None = None
        self._last_flush = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._sleeping = False
        self.flushes = 0

    @property
    def latest(self) -> ProgressState | None:
        return self._latest

    def report(self, state: ProgressState) -> None:
        """Record a new state; schedules a flush if none is pending. Never raises, never waits."""
        if self._closed:
            return
        self._latest = state
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_loop(), name="progress-flush")

    async def _flush_loop(self) -> None:
        while not self._closed and self._latest is not None and self._latest is not self._sent:
            wait_s = self._last_flush + self._min_interval_s - self._clock()
            if wait_s > 0:
                self._sleeping = True
                try:
                    await asyncio.sleep(wait_s)
                finally:
                    self._sleeping = False
                continue
            if self._budget is not None and self._needs_budget():
                self._sleeping = True  # waiting for a turn: close() may cancel it
                try:
                    await self._budget.acquire()
                finally:
                    self._sleeping = False
            state = self._latest  # the newest state when the turn comes, not when it was asked
            if state is None or state is self._sent:
                continue
            self._last_flush = self._clock()
            self._sent = state
            await self._deliver(state)

    async def _deliver(self, state: ProgressState) -> None:
        self.flushes += 1
        try:
            await self._sink(state)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged with traceback, see below
            # The sink is the delivery ladder, which handles Discord failures itself; anything
            # reaching here is a bug, and progress must never take the workflow down with it.
            logger.exception("progress sink failed")

    async def _stop_task(self) -> None:
        """Let an edit in flight finish (cancelling it could leave a request half-sent); cancel
        only a task that is merely waiting for its next turn."""
        self._closed = True
        task = self._task
        if task is None or task.done():
            return
        if self._sleeping:
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise

    async def finish(self, final: ProgressState | None = None) -> None:
        """Stop flushing and deliver the final state (if it was not the last one shown)."""
        await self._stop_task()
        state = final or self._latest
        if state is not None and state is not self._sent:
            wait_s = self._last_flush + self._min_interval_s - self._clock()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._sent = state
            self._last_flush = self._clock()
            await self._deliver(state)

    async def close(self) -> None:
        """Stop without delivering anything more (shutdown, cancellation)."""
        await self._stop_task()
