"""GroupRunner: the loop side shared by the SQLite writer and the result file writer.

Jobs here are plain objects and the "disk" is a function run in a real thread, so the tests can
see what the loop does between groups: callers woken one per iteration (a timer runs between
them), the next group already running meanwhile, jobs that arrive while callers are woken still
run, and nobody left waiting when the thread fails or the flusher is cancelled.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from notifier.groupcommit.group_runner import GroupRunner, Outcome


@dataclass(eq=False)
class Job:
    value: int
    future: asyncio.Future[Any]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


def take_all(queue: list[Job]) -> list[Job]:
    group = list(queue)
    queue.clear()
    return group


def doubled(group: list[Job]) -> list[Outcome]:
    return [(True, job.value * 2) for job in group]


def stopped() -> Exception:
    return RuntimeError("runner stopped")


async def submit(runner: GroupRunner[Job], value: int) -> Any:
    job = Job(value, asyncio.get_running_loop().create_future())
    runner.submit(job)
    return await job.future


async def test_callers_are_woken_one_per_loop_iteration_so_timers_run_between_them(
    executor: ThreadPoolExecutor,
) -> None:
    runner = GroupRunner(executor, take=take_all, run=doubled, stopped=stopped, name="t")
    order: list[str] = []

    async def caller(value: int) -> None:
        await submit(runner, value)
        order.append(f"caller {value}")

    callers = [asyncio.create_task(caller(v)) for v in range(10)]

    async def ticker() -> None:
        while not all(c.done() for c in callers):
            order.append("tick")
            await asyncio.sleep(0)

    await asyncio.sleep(0)  # all ten queued: one group
    await asyncio.gather(*callers, ticker())
    await runner.drain()

    assert runner.groups == 1
    woken = [i for i, entry in enumerate(order) if entry.startswith("caller")]
    # Between two woken callers the loop ran something else (the ticker): never back to back.
    assert all(b - a > 1 for a, b in itertools.pairwise(woken)), order


async def test_the_next_group_runs_while_the_callers_of_the_last_are_woken(
    executor: ThreadPoolExecutor,
) -> None:
    runner = GroupRunner(executor, take=take_all, run=doubled, stopped=stopped, name="t")
    groups_seen_by_first_callers: list[int] = []
    first = [asyncio.create_task(submit(runner, v)) for v in range(5)]
    await asyncio.sleep(0)  # group one taken
    later = [asyncio.create_task(submit(runner, 100 + v)) for v in range(5)]  # queued meanwhile

    for task in first:
        await task
        groups_seen_by_first_callers.append(runner.groups)
    results = await asyncio.gather(*later)
    await runner.drain()

    assert results == [200, 202, 204, 206, 208]
    # The second group was handed to the thread before the first caller of the first woke.
    assert groups_seen_by_first_callers == [2] * 5


async def test_jobs_that_arrive_while_callers_are_woken_still_run(
    executor: ThreadPoolExecutor,
) -> None:
    runner = GroupRunner(executor, take=take_all, run=doubled, stopped=stopped, name="t")

    async def chain(value: int, depth: int) -> int:
        # Each caller submits its next job the moment it is woken, as the store does.
        result = await submit(runner, value)
        return result if depth == 0 else await chain(result, depth - 1)

    async with asyncio.timeout(10):
        results = await asyncio.gather(*(chain(v, 3) for v in range(1, 6)))
    await runner.drain()

    assert results == [v * 16 for v in range(1, 6)]


async def test_a_failing_thread_fails_every_waiting_caller_and_the_runner_recovers(
    executor: ThreadPoolExecutor,
) -> None:
    def run(group: list[Job]) -> list[Outcome]:
        if any(job.value < 0 for job in group):
            raise OSError("the disk went away")
        return doubled(group)

    runner = GroupRunner(executor, take=take_all, run=run, stopped=stopped, name="t")

    async with asyncio.timeout(10):
        outcomes = await asyncio.gather(
            submit(runner, 1), submit(runner, -1), submit(runner, 2), return_exceptions=True
        )
        await runner.drain()
        after = await submit(runner, 21)

    assert all(isinstance(o, OSError) and "went away" in str(o) for o in outcomes)
    assert after == 42


async def test_a_cancelled_flusher_tells_every_waiting_caller_it_stopped(
    executor: ThreadPoolExecutor,
) -> None:
    release = threading.Event()

    def slow(group: list[Job]) -> list[Outcome]:
        release.wait(5)
        return doubled(group)

    runner = GroupRunner(executor, take=take_all, run=slow, stopped=stopped, name="t")
    running = [asyncio.create_task(submit(runner, v)) for v in range(3)]
    await asyncio.sleep(0.05)  # the group is in the thread
    queued = [asyncio.create_task(submit(runner, v)) for v in range(3)]
    await asyncio.sleep(0)
    # The loop's shutdown cancels every task; here only the runner's own (named after it) is.
    (flusher,) = [task for task in asyncio.all_tasks() if task.get_name() == "t"]

    flusher.cancel()
    outcomes = await asyncio.gather(*running, *queued, return_exceptions=True)
    release.set()

    assert all(isinstance(o, RuntimeError) and "stopped" in str(o) for o in outcomes)
    assert runner.queue == []
