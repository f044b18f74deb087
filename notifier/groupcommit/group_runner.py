"""Group commit, the loop's side: queue jobs, run them in groups on one thread, wake the callers.

Both the SQLite writer and the result file writer make callers that arrive together share one
trip to the disk. They share this part: a queue, one flusher task that hands the next group to
the thread while it wakes the callers of the previous one, and what happens if the thread or the
flusher dies (every caller still waiting is told, none is left hanging).

Why callers are woken one per loop iteration (`asyncio.sleep(0)` between them): each woken caller
goes on with its own work (the next write, a delivery). Woken all at once, 16 of them ran back to
back before any timer, and the loop's 1 ms probe saw p99 lags of 5-6 ms instead of 3.5 ms
(BENCHMARKS.md, loop lag); the bot's gateway heartbeat lives on the same loop. The next group is
already on its way to the disk meanwhile, so spreading the wake-ups costs no throughput.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

__all__ = ["GroupJob", "GroupRunner", "Outcome"]

Outcome = tuple[bool, Any]  # (True, value) or (False, the exception for this caller)


class GroupJob(Protocol):
    future: asyncio.Future[Any]


class GroupRunner[J: GroupJob]:
    """Runs queued jobs in groups: `take(queue)` picks the next group (and removes it from the
    queue), `run(group)` runs it in `executor` (blocking, one outcome per job, in order) and
    `stopped()` makes the error for callers whose job may not have run when the runner dies."""

    def __init__(
        self,
        executor: Executor,
        *,
        take: Callable[[list[J]], list[J]],
        run: Callable[[list[J]], list[Outcome]],
        stopped: Callable[[], Exception],
        name: str,
    ) -> None:
        self._executor = executor
        self._take = take
        self._run = run
        self._stopped = stopped
        self._name = name
        self.queue: list[J] = []
        self._flusher: asyncio.Task[None] | None = None
        self.groups = 0  # groups run: how much sharing happened (benchmarks, tests)

    def submit(self, job: J) -> None:
        """Queue `job`; its future gets its outcome once its group has run."""
        self.queue.append(job)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=self._name)

    async def drain(self) -> None:
        """Wait until every queued job has run and its caller has been told."""
        while self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    def _start(self) -> tuple[list[J], asyncio.Future[list[Outcome]]] | None:
        if not self.queue:
            return None
        group = self._take(self.queue)
        self.groups += 1
        work = asyncio.get_running_loop().run_in_executor(self._executor, self._run, group)
        return group, work

    async def _flush(self) -> None:
        unresolved: list[J] = []
        running = None
        try:
            running = self._start()
            while running is not None:
                group, work = running
                unresolved = group
                outcomes = await work
                running = self._start()  # the next group goes to the disk while we wake these
                for index, (job, (ok, value)) in enumerate(zip(group, outcomes, strict=True)):
                    unresolved = group[index:]
                    if not job.future.done():
                        if ok:
                            job.future.set_result(value)
                        else:
                            job.future.set_exception(value)
                        await asyncio.sleep(0)
                unresolved = []
                if running is None:  # jobs that came while we were waking these
                    running = self._start()
        except BaseException as exc:
            # The thread failed, or the flusher was cancelled (the loop is closing): nobody may
            # be left waiting, whether their job ran, is running or never started.
            error = exc if isinstance(exc, Exception) else self._stopped()
            waiting = unresolved + (running[0] if running is not None else []) + self.queue
            if running is not None and running[0] is not unresolved:
                running[1].cancel()  # not started yet: it never will; started: it runs out
            self.queue = []
            for job in waiting:
                if not job.future.done():
                    job.future.set_exception(error)
            raise
        finally:
            self._flusher = None
