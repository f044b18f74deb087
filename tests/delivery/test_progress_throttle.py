"""Progress is coalesced: latest state wins, at most one flush per interval, final always shown."""

from __future__ import annotations

import asyncio

from notifier.records import ProgressState
from notifier.runner.progress import ProgressThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_bursts_are_coalesced_and_final_state_is_shown() -> None:
    shown: list[ProgressState] = []

    async def sink(state: ProgressState) -> None:
        shown.append(state)

    throttle = ProgressThrottle(sink, min_interval_s=0.05)
    for i in range(500):
        throttle.report(ProgressState("crawling", i / 500))
        if i % 50 == 0:
            await asyncio.sleep(0)
    final = ProgressState("done", 1.0)
    await throttle.finish(final)
    assert shown[-1] == final
    assert len(shown) < 20  # 500 reports, a handful of edits
    fractions = [s.progress for s in shown]
    assert fractions == sorted(fractions)


async def test_flushes_respect_the_interval_by_the_clock() -> None:
    clock = FakeClock()
    flush_times: list[float] = []

    async def sink(state: ProgressState) -> None:
        flush_times.append(clock.now)

    throttle = ProgressThrottle(sink, min_interval_s=2.0, clock=clock)
    throttle.report(ProgressState("a", 0.1))
    await asyncio.sleep(0.01)
    assert flush_times == [0.0]
    throttle.report(ProgressState("a", 0.2))  # within the interval: waits
    await asyncio.sleep(0.01)
    assert flush_times == [0.0]
    clock.now = 2.5
    await throttle.close()
    throttle2 = ProgressThrottle(sink, min_interval_s=2.0, clock=clock)
    throttle2.report(ProgressState("b", 0.3))
    await asyncio.sleep(0.01)
    assert flush_times == [0.0, 2.5]
    await throttle2.close()


async def test_a_failing_sink_never_reaches_the_workflow() -> None:
    calls = 0

    async def sink(state: ProgressState) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug in the sink")

    throttle = ProgressThrottle(sink, min_interval_s=0.01)
    throttle.report(ProgressState("a", 0.5))
    await asyncio.sleep(0.05)
    await throttle.finish(ProgressState("done", 1.0))
    assert calls == 2
