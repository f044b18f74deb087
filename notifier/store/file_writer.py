"""Result files written in groups, from one thread: the disk's own group commit.

Why groups: each result written, fsynced and renamed on its own, in parallel threads, made the
threads fight over the folder's lock while creating and renaming (the kernel spins on it, burning
the CPU the fsyncs needed), and cost four thread hand-offs per result (the existence check, the
write, the directory fsync and their wake-ups): the store was CPU-bound at half the disk's speed
(BENCHMARKS.md, persistence). Here one thread creates, fills and renames the files of a group
(the folder's metadata changes never contend), the group's fsyncs are issued together from a
small pool (a journaling filesystem commits fsyncs that wait at the same moment in one journal
commit; one after the other, each paid its own), and one fsync of the folder makes all the
renames durable. Every file is still fsynced before its rename on any filesystem; the grouping
only lets a filesystem share the work.

Each write keeps its own fate: a failure to create, write, fsync or rename one file fails that
write alone (its temp is removed); a failed folder fsync fails exactly the writes renamed in that
group, whose files may not survive a power cut (the store then writes them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ..groupcommit.group_runner import GroupRunner, Outcome
from . import files

__all__ = ["MAX_GROUP", "ResultFileWriter"]

# Files open at once in one group: far below the usual 1,024 descriptors, and enough to share
# the journal commits (past a few dozen files a group gains nothing more).
MAX_GROUP: Final = 64
# fsyncs in flight at once: enough for the journal to batch them, few enough for 2 cores.
FSYNC_THREADS: Final = 8


@dataclass(slots=True, eq=False)
class _Write:
    workflow_id: str
    data: bytes
    replace: bool
    future: asyncio.Future[None]
    mark: bool = False  # a delivery mark (`<id>.delivered`) rather than the result
    error: OSError | None = None
    temp: Path | None = None
    fd: int | None = field(default=None, repr=False)


def _abandon(write: _Write, error: OSError) -> None:
    write.error = error
    if write.fd is not None:
        with contextlib.suppress(OSError):
            os.close(write.fd)
        write.fd = None
    if write.temp is not None:
        # If even this fails, reconciliation finds the temp at the next start.
        with contextlib.suppress(OSError):
            write.temp.unlink(missing_ok=True)


def _fsync(write: _Write) -> None:
    fd = write.fd
    assert fd is not None
    try:
        os.fsync(fd)
        write.fd = None  # closed below even if close() fails: never closed twice
        os.close(fd)
    except OSError as exc:
        _abandon(write, exc)


def _final_name(write: _Write) -> str:
    if write.mark:
        return files.mark_name(write.workflow_id)
    return files.result_name(write.workflow_id)


def _write_group(directory: Path, group: list[_Write], fsyncs: ThreadPoolExecutor) -> None:
    """In the writer thread: create and fill every temp, then fsync them all at once (`fsyncs`
    threads), then rename them, then fsync the folder once. Outcomes go into each `error`."""
    names: set[str] = set()
    for write in group:
        final = directory / _final_name(write)
        if not write.replace and (final.name in names or os.path.lexists(final)):
            write.error = FileExistsError(errno.EEXIST, "a result is already stored", str(final))
            continue
        names.add(final.name)
        write.temp = directory / (
            files.mark_temp_name(write.workflow_id)
            if write.mark
            else files.temp_name(write.workflow_id)
        )
        try:
            write.fd = files.open_private(write.temp)
            view = memoryview(write.data)
            while view:
                view = view[os.write(write.fd, view) :]
        except OSError as exc:
            _abandon(write, exc)
    pending = [write for write in group if write.error is None]
    if len(pending) > 1:
        # Together, so that the journal commits them together (see the module docstring).
        for _ in fsyncs.map(_fsync, pending):
            pass
    elif pending:
        _fsync(pending[0])
    renamed = []
    for write in pending:
        if write.error is not None:
            continue
        assert write.temp is not None
        try:
            os.replace(write.temp, directory / _final_name(write))
        except OSError as exc:
            _abandon(write, exc)
        else:
            renamed.append(write)
    if renamed:
        try:
            files.fsync_dir(directory)
        except OSError as exc:
            for write in renamed:
                write.error = exc


def _take(queue: list[_Write]) -> list[_Write]:
    group = queue[:MAX_GROUP]
    del queue[:MAX_GROUP]
    return group


class ResultFileWriter:
    """Writes `<id>.json` files (and `<id>.delivered` marks) into one folder atomically (temp,
    fsync, rename, folder fsync), grouping the writes that arrive while a group is on its way
    to the disk.

    Close with `await writer.close()`: waits for queued writes, then stops the threads.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="result-files")
        self._fsyncs = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="result-fsync")
        self._runner: GroupRunner[_Write] = GroupRunner(
            self._executor,
            take=_take,
            run=self._run_in_thread,
            stopped=lambda: OSError(errno.EINTR, "the writer stopped during this write"),
            name="result-files",
        )
        self._closed = False

    @property
    def groups(self) -> int:
        """Groups written: how much sharing happened (benchmarks, tests)."""
        return self._runner.groups

    async def write(self, workflow_id: str, data: bytes, *, replace: bool = False) -> None:
        """Store `data` as the result of `workflow_id` (already validated); return once the file
        and its name are on disk.

        FileExistsError (nothing written) if a result is already stored under the id, unless
        `replace` (a retry of this process's own write, whose earlier attempt may have renamed
        the file before the folder fsync failed). Any other OSError: the file is not stored, or
        not provably durable; no temp is left behind.
        """
        await self._submit(workflow_id, data, replace=replace, mark=False)

    async def write_mark(self, workflow_id: str, data: bytes) -> None:
        """Store `data` as the delivery mark of `workflow_id` (`<id>.delivered`, replacing an
        earlier mark), as atomically and durably as a result; in the same groups."""
        await self._submit(workflow_id, data, replace=True, mark=True)

    async def _submit(self, workflow_id: str, data: bytes, *, replace: bool, mark: bool) -> None:
        if self._closed:
            raise RuntimeError("the result file writer is closed")
        future = asyncio.get_running_loop().create_future()
        write = _Write(workflow_id, data, replace, future, mark=mark)
        self._runner.submit(write)
        # shield: a cancelled caller must not cancel the group others wait for
        await asyncio.shield(write.future)

    def _run_in_thread(self, group: list[_Write]) -> list[Outcome]:
        _write_group(self.directory, group, self._fsyncs)
        return [(write.error is None, write.error) for write in group]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._runner.drain()
        # Every write has run (drained): the threads are idle and end on their own. Not waited
        # for in asyncio's default pool, which may be busy with work that is not the store's.
        self._executor.shutdown(wait=False)
        self._fsyncs.shutdown(wait=False)
