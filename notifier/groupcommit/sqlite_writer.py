"""The one writing connection to an SQLite file: its own thread, commits shared by everyone waiting.

Why not one transaction per write: with ``synchronous=FULL`` every commit is an fsync, and the
bot's writes come in crowds (200 workflows finishing together, 10,000 progress rows a few seconds
apart, 1,000 notices marked sent). One fsync per write made those crowds queue for seconds behind
a single connection. Here, writes that arrive while a commit is in progress wait for the next one
and go in together (group commit): a caller still returns only after its write is on disk, but N
callers share one fsync and one thread hop.

Each write is still atomic on its own: it runs inside a SAVEPOINT of the shared transaction, so a
write that fails (a constraint, a bug in a unit's SQL) is rolled back alone and its caller alone
gets the error. If the shared transaction itself dies (disk full, I/O error, a failed COMMIT),
every write of the group is run again in a transaction of its own, so each caller learns its own
fate and nothing is committed on behalf of a caller that was told it failed. Multi-statement
units (`run`) are arbitrary code and get a transaction of their own.

Not every write needs its own fsync: a write marked ``durable=False`` (a row the caller can rebuild
from elsewhere, or an advisory one) still commits, and is safe from a crash of the process, but a
group made only of such writes commits with ``synchronous=NORMAL``: in WAL mode that skips the
fsync, and a power cut may roll the last of those commits back (never corrupt the file). The next
durable commit fsyncs the WAL, and with it every commit before it. A group holding any durable
write commits at the connection's own level.

Reads do not come here: they use their own connection (WAL lets them run beside this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .group_runner import GroupRunner

__all__ = ["MAX_GROUP", "SQLiteWriter", "Written"]

MAX_GROUP: Final = 1_000  # writes per shared commit: bounds how long one commit keeps the rest

Unit = Callable[[sqlite3.Connection], Any]


@dataclass(frozen=True, slots=True)
class Written:
    """What one statement did: rows changed, and the rows of a ``RETURNING`` clause."""

    rowcount: int
    rows: list[tuple[Any, ...]]


@dataclass(slots=True, eq=False)
class _Job:
    unit: Unit
    future: asyncio.Future[Any]
    key: Hashable | None = None
    alone: bool = False  # a `run` unit: arbitrary code gets a transaction to itself
    durable: bool = True  # False: may be rolled back by a power cut (see the module docstring)


def _statement(sql: str, params: Sequence[Any]) -> Unit:
    def run(conn: sqlite3.Connection) -> Written:
        cursor = conn.execute(sql, params)
        try:
            rows = [tuple(row) for row in cursor.fetchall()]
            return Written(cursor.rowcount, rows)
        finally:
            cursor.close()

    return run


def _run_alone(conn: sqlite3.Connection, unit: Unit) -> tuple[bool, Any]:
    try:
        conn.execute("BEGIN IMMEDIATE")
        value = unit(conn)
        if not conn.in_transaction:
            raise sqlite3.ProgrammingError("a write unit ended the writer's transaction itself")
        conn.execute("COMMIT")
    except Exception as exc:  # noqa: BLE001 - handed to the caller, whatever it is
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        return False, exc
    return True, value


def _run_relaxed(conn: sqlite3.Connection, units: list[Unit], level: int) -> list[tuple[bool, Any]]:
    """`_run_group` with ``synchronous=NORMAL`` for this group only (`level` is the connection's
    own, restored afterwards)."""
    conn.execute("PRAGMA synchronous = NORMAL").close()
    try:
        return _run_group(conn, units)
    finally:
        conn.execute(f"PRAGMA synchronous = {level}").close()


def _run_group(conn: sqlite3.Connection, units: list[Unit]) -> list[tuple[bool, Any]]:
    """Run in the writer thread: every unit in one transaction, each inside its own savepoint."""
    if len(units) == 1:
        return [_run_alone(conn, units[0])]
    outcomes: list[tuple[bool, Any]] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for unit in units:
            conn.execute("SAVEPOINT unit")
            try:
                value = unit(conn)
            except Exception as exc:
                if not conn.in_transaction:
                    raise  # the error took the whole transaction with it: go one by one
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                outcomes.append((False, exc))
            else:
                conn.execute("RELEASE unit")
                outcomes.append((True, value))
        conn.execute("COMMIT")
    except Exception:  # noqa: BLE001 - nothing of the group is committed; run each alone
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        return [_run_alone(conn, unit) for unit in units]
    return outcomes


class SQLiteWriter:
    """Writes to one SQLite file from one thread, in shared commits (see the module docstring).

    Open with `await SQLiteWriter.open(path, pragmas)`; the pragmas are run on the connection
    before any write (``synchronous`` is per connection, so the caller's durability choice goes
    here). Close with `await writer.close()`: waits for queued writes, then closes the
    connection.
    """

    def __init__(
        self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, *, synchronous: int
    ) -> None:
        self._conn = conn
        self._executor = executor
        self._synchronous = synchronous  # the level the pragmas set: durable groups commit at it
        self._keyed: dict[Hashable, _Job] = {}
        self._runner: GroupRunner[_Job] = GroupRunner(
            executor,
            take=self._next_group,
            run=self._run_in_thread,
            stopped=lambda: sqlite3.InterfaceError(
                "the writer stopped while this write was queued or running; it may not be committed"
            ),
            name="sqlite-writer",
        )
        self._closed = False

    @property
    def groups(self) -> int:
        """Shared commits attempted: how much grouping happened (benchmarks, tests)."""
        return self._runner.groups

    @classmethod
    async def open(cls, path: Path, pragmas: Sequence[str], *, name: str) -> SQLiteWriter:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-writer")

        def connect() -> tuple[sqlite3.Connection, int]:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                for pragma in pragmas:
                    conn.execute(f"PRAGMA {pragma}").close()
                [(level,)] = conn.execute("PRAGMA synchronous").fetchall()
            except BaseException:
                conn.close()
                raise
            return conn, int(level)

        loop = asyncio.get_running_loop()
        try:
            conn, level = await loop.run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, synchronous=level)

    async def execute(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        latest_of: Hashable | None = None,
        durable: bool = True,
    ) -> Written:
        """Run one statement in the next shared commit; return once it is committed.

        `latest_of`: writes with the same key that are still queued are superseded by this one
        (only its parameters run, once, and every caller gets its result). For writes where only
        the newest value matters, such as a workflow's progress.

        `durable=False`: the write may be rolled back by a power cut (not by a crash of the
        process), in exchange for no fsync of its own; for rows rebuilt from elsewhere.
        """
        queued = self._keyed.get(latest_of) if latest_of is not None else None
        if queued is not None and not queued.future.done():  # done: the writer failed it
            queued.unit = _statement(sql, params)
            queued.durable = queued.durable or durable
            result: Written = await asyncio.shield(queued.future)
            return result
        job = self._enqueue(_statement(sql, params), durable=durable)
        if latest_of is not None:
            job.key = latest_of
            self._keyed[latest_of] = job
        written: Written = await asyncio.shield(job.future)
        return written

    async def run(self, unit: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `unit(connection)` (several statements, all or none) in the writer thread, in a
        transaction of its own (arbitrary code could end a shared one and take other callers'
        writes with it); return its value once committed. For rare, bulk work."""
        return await asyncio.shield(self._enqueue(unit, alone=True).future)

    def _enqueue(self, unit: Unit, *, alone: bool = False, durable: bool = True) -> _Job:
        if self._closed:
            raise sqlite3.ProgrammingError("the writer is closed")
        future = asyncio.get_running_loop().create_future()
        job = _Job(unit, future, alone=alone, durable=durable)
        self._runner.submit(job)
        return job

    def _next_group(self, queue: list[_Job]) -> list[_Job]:
        """The queued statements up to the first `run` unit (or that unit alone), in order."""
        size = 1
        if not queue[0].alone:
            while size < min(len(queue), MAX_GROUP) and not queue[size].alone:
                size += 1
        group = queue[:size]
        del queue[:size]
        for job in group:
            if job.key is not None:
                del self._keyed[job.key]  # a later write with the key starts a new job
        return group

    def _run_in_thread(self, group: list[_Job]) -> list[tuple[bool, Any]]:
        units = [job.unit for job in group]
        if self._synchronous <= 1 or any(job.durable for job in group):
            return _run_group(self._conn, units)
        return _run_relaxed(self._conn, units, self._synchronous)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._runner.drain()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._conn.close)
        finally:
            self._executor.shutdown(wait=False)
