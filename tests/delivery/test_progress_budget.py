"""Bot-token progress edits of all workflows share one budget (Discord's global 50 requests/s).

Many workflows flushing progress through the channel or DM rung must together stay within
`progress.bot_edits_per_second`; a workflow still on its interaction message is not held back; the
state shown when a turn comes is the newest; and stopping a workflow that waits for a turn does
not wait for the turn.
"""

from __future__ import annotations

import asyncio
import time

from aiolimiter import AsyncLimiter

from notifier.records import ProgressState
from notifier.runner.progress import ProgressThrottle

RATE = 10.0  # edits per second for all workflows together


async def _run_many(count: int, seconds: float, *, budgeted: bool) -> tuple[int, float]:
    """`count` workflows reporting all the time for `seconds`; total flushes and elapsed time."""
    budget = AsyncLimiter(RATE, 1.0)
    flushes = 0

    async def sink(state: ProgressState) -> None:
        nonlocal flushes
        flushes += 1

    throttles = [
        ProgressThrottle(sink, min_interval_s=0.05, budget=budget, needs_budget=lambda: budgeted)
        for _ in range(count)
    ]
    began = time.monotonic()
    step = 0
    while time.monotonic() - began < seconds:
        step += 1
        for throttle in throttles:
            throttle.report(ProgressState("crawling", step / 10_000))
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - began
    async with asyncio.timeout(5):  # waiting for a turn must not hold up the stop
        await asyncio.gather(*(t.close() for t in throttles))
    return flushes, elapsed


async def test_bot_token_edits_of_all_workflows_stay_within_the_shared_budget() -> None:
    flushes, elapsed = await _run_many(40, 1.5, budgeted=True)

    # A full bucket at start (RATE), then RATE per second: never more, whatever the workflows do.
    assert flushes <= RATE + RATE * elapsed + 1
    assert flushes >= RATE  # and the budget is used, not starved


async def test_edits_of_interaction_messages_do_not_wait_for_the_budget() -> None:
    flushes, elapsed = await _run_many(40, 1.5, budgeted=False)

    assert flushes > 3 * (RATE + RATE * elapsed)  # each workflow at its own interval


async def test_the_state_shown_when_a_turn_comes_is_the_newest() -> None:
    budget = AsyncLimiter(1, 1.0)
    await budget.acquire()  # the bucket is empty: the next flush waits about a second
    shown: list[ProgressState] = []
    flushed = asyncio.Event()

    async def sink(state: ProgressState) -> None:
        shown.append(state)
        flushed.set()

    throttle = ProgressThrottle(sink, min_interval_s=0.01, budget=budget)
    throttle.report(ProgressState("crawling", 0.1))
    await asyncio.sleep(0.05)
    throttle.report(ProgressState("crawling", 0.7))  # arrives while the flush waits for a turn
    async with asyncio.timeout(5):
        await flushed.wait()
    await throttle.close()

    assert [s.progress for s in shown] == [0.7]


async def test_the_final_state_does_not_wait_for_the_budget() -> None:
    budget = AsyncLimiter(1, 60.0)
    await budget.acquire()  # no turn for a minute
    shown: list[ProgressState] = []

    async def sink(state: ProgressState) -> None:
        shown.append(state)

    throttle = ProgressThrottle(sink, min_interval_s=0.01, budget=budget)
    throttle.report(ProgressState("crawling", 0.5))
    await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        await throttle.finish(ProgressState("done", 1.0))

    assert [s.stage for s in shown] == ["done"]
