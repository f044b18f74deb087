"""The store's own threads for its blocking work, instead of asyncio's default pool.

Why its own: the default pool (`asyncio.to_thread`) is shared with work the store cannot bound,
such as a workflow parsing a hostile page (a thread cannot be cancelled: a quadratic parse holds
its thread for as long as it takes). With every default thread busy there, a finished result would
wait behind them to be encoded, and `/retrieve_results` to be read. Two small pools, created with
the store and shut down when it closes:

- `work`: what a user waits for: encoding a finished result (and decoding it back), reading a
  stored result, the few file operations of a finish (a folder re-created after a write failed);
- `maintenance`: whole-store jobs that may run long (listing and re-indexing a million files at
  start, retention's deletions, moving files to quarantine, reading the URL search's statistics),
  so that they never hold up the first.

(The result file writer, the index's writer and its reading connection have threads of their own.)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

__all__ = ["MAINTENANCE_THREADS", "WORK_THREADS", "StoreThreads"]

# Encoding holds the GIL (2 cores: more threads would only queue on it), reads wait on the disk:
# four lets reads overlap encodes without letting the store take over the process.
WORK_THREADS: Final = 4
# Whole-store jobs run one step at a time; the second thread keeps the URL search's statistics
# (seconds on a million rows) from holding up a retention sweep.
MAINTENANCE_THREADS: Final = 2


class StoreThreads:
    """Two bounded pools (see the module docstring). `close` stops taking work; jobs already
    queued still run (nothing the store started is abandoned half-way)."""

    def __init__(
        self, *, work_threads: int = WORK_THREADS, maintenance_threads: int = MAINTENANCE_THREADS
    ) -> None:
        self._work = ThreadPoolExecutor(work_threads, thread_name_prefix="store-work")
        self._maintenance = ThreadPoolExecutor(
            maintenance_threads, thread_name_prefix="store-maintenance"
        )

    async def work[T](self, function: Callable[..., T], /, *args: object) -> T:
        """Run `function(*args)` in a work thread: short jobs a user waits for."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._work, functools.partial(function, *args))

    async def maintenance[T](self, function: Callable[..., T], /, *args: object) -> T:
        """Run `function(*args)` in a maintenance thread: whole-store jobs."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._maintenance, functools.partial(function, *args))

    def close(self) -> None:
        """Take no more work; the threads end once their queued jobs are done (not waited for
        here: a job whose caller was cancelled may still be reading a file)."""
        self._work.shutdown(wait=False)
        self._maintenance.shutdown(wait=False)
