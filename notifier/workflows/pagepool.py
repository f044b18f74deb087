"""The bot's side of the page workers: a small pool of child processes, started when the first
page needs one, that every autointel run shares.

Theory of operation. A page's bytes go to a worker (`pageworker`) over a socket and come back as
a `PageSummary` of a few hundred kilobytes at most, so decoding, parsing and analysis never run
on the event loop, in its GIL, or in the default thread pool. At most `workers` processes exist;
a page waits (cancellably) for a free one, the run with the fewest pages analysed first. Every
page is bounded four ways:

- CPU time (`page_cpu_s`): enforced inside the worker (a timer, and RLIMIT_CPU as a backstop);
- wall-clock time (`page_wall_s`, WALL_PER_CPU times the CPU limit plus WALL_SLACK_S, so a page
  on a busy host is not failed for waiting its turn for a core): here, by killing the worker;
- memory (`memory_bytes`, the worker's address space) inside the worker;
- the caller's patience: a run cancelled while its page is in a worker (`/workflow cancel`,
  shutdown) kills that worker at once (SIGKILL), so the CPU it was burning is freed too.

A page over a limit raises PageRejected with a sentence for the user and that worker is replaced
by a fresh one the next time one is needed; nothing else notices. A worker that died, answered
nonsense or retired itself is discarded the same way. Workers hold no state between pages.

The pool is not tied to an event loop (plain sockets and `subprocess.Popen`; each call uses the
running loop), spawning is `Popen` in the pool's own thread (it waits for the child's exec), and
`close()` kills and reaps every worker. A pool never closed (a test that
forgot) kills its workers when it is garbage-collected; a bot killed outright leaves workers
that exit on their own when their socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import signal
import socket
import subprocess
import sys
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson
from yarl import URL

from ..errors import NotifierError
from .pagewire import MAX_REPLY_BYTES, READY, REPLY_HEAD, REQUEST_HEAD, PageSummary

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "SPAWN_TIMEOUT_S",
    "WALL_PER_CPU",
    "WALL_SLACK_S",
    "PagePool",
    "PageRejected",
]

WORKER_MODULE: Final = "notifier.workflows.pageworker"
#: A worker's address space (RLIMIT_AS): the worst 2 MiB page measured peaks at 116 MB resident.
DEFAULT_MEMORY_BYTES: Final = 1024 * 1024 * 1024
WALL_PER_CPU: Final = 4.0
WALL_SLACK_S: Final = 5.0
#: A worker that has not said READY by then is broken (it imports in about 50 ms).
SPAWN_TIMEOUT_S: Final = 30.0
_REAP_TIMEOUT_S: Final = 5.0
_ENV_KEYS: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])


class PageRejected(NotifierError):
    """The page could not be analysed. `reason` is one sentence safe to show the user."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _WorkerGone(Exception):
    """The worker closed its socket or broke the protocol."""


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    sock: socket.socket
    busy: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the process. The socket stays open while a page is in progress: closing it
        under a pending `sock_recv_into` would leave that await hanging forever, whereas the
        dead worker's end closing wakes it with end-of-stream."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        if not self.busy:
            self.sock.close()

    async def recv_exactly(self, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            try:
                count = await loop.sock_recv_into(self.sock, view[got:])
            except OSError:
                raise _WorkerGone from None
            if count == 0:
                raise _WorkerGone
            got += count
        return bytes(buffer)

    async def send(self, *parts: bytes | bytearray) -> None:
        loop = asyncio.get_running_loop()
        try:
            for part in parts:
                await loop.sock_sendall(self.sock, part)
        except OSError:
            raise _WorkerGone from None


def _worker_env() -> dict[str, str]:
    """No secret reaches a worker: only the path, the locale and where the package is."""
    env = {key: os.environ[key] for key in _ENV_KEYS if key in os.environ}
    env["PYTHONPATH"] = _PACKAGE_ROOT
    return env


def _kill_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.busy = False
        worker.kill()


async def _exit_status(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The worker's exit status once it has exited (reaped), or None if it is still running
    after `timeout_s`. Polls: a worker that closed its socket exits within milliseconds."""
    delay_s = 0.001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        status = process.poll()
        if status is not None or loop.time() >= deadline:
            return status
        await asyncio.sleep(delay_s)
        delay_s = min(0.05, delay_s * 2)


class PagePool:
    """Up to `workers` page worker processes, each page limited to `page_cpu_s` of CPU,
    `page_wall_s` of wall clock (default: WALL_PER_CPU x page_cpu_s + WALL_SLACK_S) and
    `memory_bytes` of address space. See the module docstring."""

    def __init__(
        self,
        *,
        workers: int,
        page_cpu_s: float,
        page_wall_s: float | None = None,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if page_cpu_s <= 0 or (page_wall_s is not None and page_wall_s <= 0):
            raise ValueError("page_cpu_s and page_wall_s must be positive")
        self.size = workers
        self.page_cpu_s = page_cpu_s
        self.page_wall_s = (
            WALL_PER_CPU * page_cpu_s + WALL_SLACK_S if page_wall_s is None else page_wall_s
        )
        self.memory_bytes = memory_bytes
        self.started = 0  # worker processes ever started (a replaced one counts again)
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        # (priority, arrival, future): a heap, so the lowest priority number is served first.
        self._waiters: list[tuple[int, int, asyncio.Future[_Worker | None]]] = []
        self._arrivals = itertools.count()
        self._reapers: set[asyncio.Task[None]] = set()
        self._spawning = 0
        self._spawner: ThreadPoolExecutor | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    # -- observing -----------------------------------------------------------------------------

    @property
    def busy_pids(self) -> list[int]:
        """Workers analysing a page now."""
        return [w.pid for w in self._workers if w.busy]

    @property
    def pids(self) -> list[int]:
        """Every worker process alive (idle or busy)."""
        return [w.pid for w in self._workers]

    # -- analysing -----------------------------------------------------------------------------

    async def analyse(
        self,
        body: bytes | bytearray,
        *,
        url: URL,
        site: URL,
        charset: str | None,
        encoding: str = "",
        max_bytes: int,
        priority: int = 0,
    ) -> PageSummary:
        """The summary of one page (`body` as fetched from `url`, still in its Content-Encoding
        `encoding`, at most `max_bytes` once inflated; links sorted relative to `site`), or
        PageRejected saying why not. Cancelling kills the worker at once.

        When every worker is busy, pages wait in `priority` order (lower first, then arrival):
        autointel passes how many pages the run has had analysed, so a start page is served
        before the 30th page of a long crawl, and twenty crawls of hostile pages cannot keep
        anyone else's quick run waiting behind all their pages."""
        header = orjson.dumps(
            {
                "url": str(url),
                "site": str(site),
                "charset": charset[:64] if charset else None,
                "encoding": encoding,
                "max_bytes": max_bytes,
                "cpu_s": self.page_cpu_s,
            }
        )
        worker = await self._acquire(priority)
        keep = False
        try:
            async with asyncio.timeout(self.page_wall_s):
                await worker.send(REQUEST_HEAD.pack(len(header), len(body)), header, body)
                (size,) = REPLY_HEAD.unpack(await worker.recv_exactly(REPLY_HEAD.size))
                if size > MAX_REPLY_BYTES:
                    raise _WorkerGone
                payload = await worker.recv_exactly(size)
            keep = True
        except TimeoutError:
            raise PageRejected(
                f"analysing the page took longer than {self.page_wall_s:g} s"
            ) from None
        except _WorkerGone:
            if self._closed:
                raise PageRejected("the bot is shutting down") from None
            status = await _exit_status(worker.process, timeout_s=1.0)
            raise PageRejected(self._death_reason(status)) from None
        finally:
            if not keep:
                worker.busy = False
                self._discard(worker)  # cancelled, timed out or gone: killed here
        try:
            reply = orjson.loads(payload)
            if not isinstance(reply, dict):
                raise ValueError("not an object")
            error = reply.get("error")
            summary = None if error is not None else PageSummary.from_wire(reply.get("page"))
        except (ValueError, IndexError, TypeError):
            self._discard(worker)
            raise PageRejected("the page analyser gave an unreadable answer") from None
        if reply.get("retire") is True:
            self._discard(worker)
        else:
            self._release(worker)
        if summary is None:
            raise PageRejected(self._error_reason(error, max_bytes))
        return summary

    def _error_reason(self, error: object, max_bytes: int) -> str:
        if error == "too-large":
            return f"the page is larger than {max_bytes:,} bytes"
        if error == "compressed":
            return "the page's compressed data is damaged"
        if error == "cpu":
            return f"analysing the page used more than {self.page_cpu_s:g} s of CPU"
        if error == "memory":
            return (
                f"analysing the page needed more than {self.memory_bytes // 2**20:,} MiB of memory"
            )
        return "the page could not be analysed"

    def _death_reason(self, status: int | None) -> str:
        if status in (-signal.SIGVTALRM, -signal.SIGXCPU):
            return f"analysing the page used more than {self.page_cpu_s:g} s of CPU"
        if status == -signal.SIGKILL:
            return "the page analyser was killed (out of memory?)"
        if status is None:
            return "the page analyser stopped answering"
        return f"the page analyser stopped unexpectedly (exit status {status})"

    # -- the workers -----------------------------------------------------------------------------

    async def _acquire(self, priority: int) -> _Worker:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise PageRejected("the bot is shutting down")
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    worker.busy = True
                    return worker
                self._discard(worker)
            if len(self._workers) + self._spawning < self.size:
                return await self._spawn()
            waiter: asyncio.Future[_Worker | None] = loop.create_future()
            heapq.heappush(self._waiters, (priority, next(self._arrivals), waiter))
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    late = waiter.result()  # handed over just as we were cancelled
                    if late is not None:
                        self._release(late)
                    else:
                        self._wake_one()  # pass on the turn to spawn
                raise
            if handed is not None:
                handed.busy = True
                return handed

    async def _start_process(self) -> tuple[subprocess.Popen[bytes], socket.socket]:
        """A new worker process and the bot's end of its socket. `Popen` waits for the child's
        exec, which on a busy host took up to 26 ms of the loop in `bench.hostile`: it runs in
        the pool's own spawning thread instead (never the default executor)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-P", "-m", WORKER_MODULE, "--fd", str(child.fileno())]
        argv += ["--memory-bytes", str(self.memory_bytes)]

        def start() -> subprocess.Popen[bytes]:
            try:
                return subprocess.Popen(
                    argv,
                    pass_fds=(child.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    env=_worker_env(),
                    start_new_session=True,
                )
            finally:
                child.close()

        def abandon(started: asyncio.Future[subprocess.Popen[bytes]]) -> None:
            parent.close()
            if not started.cancelled() and started.exception() is None:
                started.result().kill()

        if self._spawner is None:
            self._spawner = ThreadPoolExecutor(1, thread_name_prefix="page-worker-spawn")
        started = asyncio.get_running_loop().run_in_executor(self._spawner, start)
        try:
            process = await asyncio.shield(started)
        except asyncio.CancelledError:
            started.add_done_callback(abandon)
            raise
        except OSError as exc:
            parent.close()
            raise PageRejected(f"the page analyser could not start ({exc.strerror})") from None
        return process, parent

    async def _spawn(self) -> _Worker:
        self._spawning += 1
        try:
            process, parent = await self._start_process()
        except BaseException:
            self._wake_one()  # the place is free again
            raise
        finally:
            self._spawning -= 1
        parent.setblocking(False)
        worker = _Worker(process, parent, busy=True)  # busy: its socket is being read
        self._workers.add(worker)
        self.started += 1
        try:
            async with asyncio.timeout(SPAWN_TIMEOUT_S):
                ready = await worker.recv_exactly(len(READY))
            if ready != READY:
                raise _WorkerGone
        except BaseException as exc:
            worker.busy = False
            self._discard(worker)
            if self._closed:
                raise PageRejected("the bot is shutting down") from None
            if isinstance(exc, (TimeoutError, _WorkerGone)):
                raise PageRejected("the page analyser could not start") from None
            raise
        return worker

    def _release(self, worker: _Worker) -> None:
        worker.busy = False
        if self._closed or worker not in self._workers:
            self._discard(worker)
            return
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    def _discard(self, worker: _Worker) -> None:
        """Kill `worker` (if alive), reap it in the background, and let a waiter take its
        place (it spawns a fresh one). A busy worker's page sees it die and discards it again,
        closing its socket then."""
        worker.kill()
        if worker in self._workers:
            self._workers.discard(worker)
            with contextlib.suppress(RuntimeError):  # no running loop: the finalizer's case
                task = asyncio.get_running_loop().create_task(self._reap(worker))
                self._reapers.add(task)
                task.add_done_callback(self._reapers.discard)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        self._wake_one()

    def _wake_one(self) -> None:
        """A place became free: the first waiter goes and spawns a worker."""
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)
                return

    @staticmethod
    async def _reap(worker: _Worker) -> None:
        if await _exit_status(worker.process, _REAP_TIMEOUT_S) is None:
            worker.process.kill()

    async def close(self) -> None:
        """Kill every worker (a page in progress fails with PageRejected) and reap them; later
        pages are refused. Idempotent."""
        self._closed = True
        for _, _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        for worker in list(self._workers):
            self._discard(worker)
        if self._reapers:
            await asyncio.gather(*self._reapers, return_exceptions=True)
        if self._spawner is not None:
            self._spawner.shutdown(wait=False)
        self._finalizer.detach()
