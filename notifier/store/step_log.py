"""A workflow's recorded steps: one append-only file per workflow, each step fsynced before it counts.

Why files and not rows of the index (issue 17 allowed either, "if measured better"): as rows, a
100 KB step's p99 was 3-5x a raw write + fsync of the same bytes with 16 workflows stepping at
once (bench/steps.py, BENCHMARKS.md section 8). Sixteen such values make one 1.6 MB commit that
the next group waits behind, and SQLite writes every byte twice (the WAL, then the checkpoint into
the database, with an fsync of its own). Appended to the workflow's own file, a step costs the
raw write and a 10-byte frame header, whatever its size, and the workflows' fsyncs meet in the
filesystem's journal as the raw writes' do. The files also outlive the index: an index rebuilt
from the result files keeps no row of a running workflow, but its steps are still here until
reconciliation finds no row for them.

Theory of operation
-------------------
``steps/<workflow_id>.steps`` holds frames, one per recorded step, in the order they were
recorded::

    b"s1" | length of the body (u32, big-endian) | CRC-32 of the body (u32) | body
    body = {"i": index, "n": name, "t": recorded_at} as JSON | b"\\n" | the value's JSON (`steps`)

- **Durable before it counts.** `record` writes the frame with `pwrite` at the end of what is
  known to be valid, then `fsync`s the file (and its folder, for the first frame) before it
  returns: a workflow that goes on after `record` never runs the step again on a resume.
- **A torn tail is cut off.** A crash mid-write leaves a frame whose length or CRC does not
  match; readers stop at the first such frame (the steps after it were never acknowledged). The
  next `record` truncates the file to the last whole frame before it appends, so a later frame is
  never hidden behind a torn one.
- **Replaced, never changed in place.** The same index recorded again (the process died between
  the write and the workflow's going on, and the replay ran the step again) is appended, and
  readers keep the last frame of each index. Under another name it is refused (`record` returns
  the recorded name and writes nothing): a replay that differs is the runner's to report.
- **One writer per workflow.** Appends to one file are serialised by a lock per workflow; what is
  known of each file (its valid length, the names by index) is kept while the workflow records
  steps and read back from the file the first time (after a restart) or after `forget`.

Threads: `record` encodes (redaction included) and writes in one hop to a small pool of its own
(`STEP_THREADS`); reads and removals run there too. A workflow's file stays open while it records
steps (one descriptor per unfinished workflow, so at most the runner's ``max_concurrent``) and is
closed when it finishes: an open, an fstat and a close per step were three more returns to the
GIL for every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import struct
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from ..records import RecordedStep
from . import files
from .locks import KeyedLocks
from .steps import decode_step, encode_step

__all__ = ["STEPS_DIR", "Frame", "StepLog", "latest", "read_frames"]

STEPS_DIR: Final = "steps"
# Measured (bench/steps.py, 16 workflows with 100 KB steps): 16 threads, one per workflow, kept
# the most fsyncs in flight but their GIL hand-offs (encoding, each syscall's return) starved
# the event loop (lag p99 8 ms); 4 threads gave a lower step p99 and a loop lag p99 under 2 ms.
STEP_THREADS: Final = 4

_MAGIC: Final = b"s1"
_HEADER: Final = struct.Struct(">2sII")
_NAME = re.compile(r"([0-9a-f]{32})\.steps")


@dataclass(frozen=True, slots=True)
class Frame:
    """One recorded step as its frame holds it; `value` still the stored JSON bytes."""

    index: int
    name: str
    recorded_at: float
    value: bytes


@dataclass(slots=True)
class _Known:
    """What is known of one workflow's file: where its last whole frame ends, names by index,
    and its descriptor while the workflow records steps (None: opened at the next append)."""

    length: int = 0
    names: dict[int, str] = field(default_factory=dict)
    fd: int | None = None


def encode_frame(index: int, name: str, recorded_at: float, value: bytes) -> bytes:
    body = orjson.dumps({"i": index, "n": name, "t": recorded_at}) + b"\n" + value
    return _HEADER.pack(_MAGIC, len(body), zlib.crc32(body)) + body


def read_frames(data: bytes) -> tuple[list[Frame], int]:
    """The whole frames at the start of `data`, and where the last of them ends (a torn or
    damaged frame, and everything after it, is not read)."""
    frames: list[Frame] = []
    offset = 0
    while len(data) - offset >= _HEADER.size:
        magic, length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        body = data[start : start + length]
        if magic != _MAGIC or len(body) != length or zlib.crc32(body) != crc:
            break
        head, newline, value = body.partition(b"\n")
        try:
            meta: dict[str, Any] = orjson.loads(head) if newline else {}
            frame = Frame(int(meta["i"]), str(meta["n"]), float(meta["t"]), value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            break  # a CRC that matches garbage: not ours, stop as for a torn frame
        frames.append(frame)
        offset = start + length
    return frames, offset


def latest(frames: Iterable[Frame]) -> list[Frame]:
    """The last frame of each index, by index."""
    by_index: dict[int, Frame] = {}
    for frame in frames:
        by_index[frame.index] = frame
    return [by_index[index] for index in sorted(by_index)]


def _read_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return b""


def _load(path: Path) -> _Known:
    frames, length = read_frames(_read_file(path))
    return _Known(length, {frame.index: frame.name for frame in latest(frames)})


def _append(
    path: Path,
    known: _Known | None,
    index: int,
    name: str,
    value: object,
    recorded_at: float,
    limit_bytes: int,
) -> tuple[_Known, str | None]:
    """In a step thread: encode `value`, append its frame and fsync. Returns what is now known of
    the file, and the name already recorded under `index` if it is another (nothing written)."""
    if known is None:
        known = _load(path)
    recorded = known.names.get(index)
    if recorded is not None and recorded != name:
        return known, recorded
    frame = encode_frame(index, name, recorded_at, encode_step(value, limit_bytes=limit_bytes))
    fd = known.fd
    try:
        if fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = known.fd = os.open(path, flags, files.FILE_MODE)
            if os.fstat(fd).st_size != known.length:
                os.ftruncate(fd, known.length)  # a torn frame from a crash: never append after it
        written = 0
        while written < len(frame):
            written += os.pwrite(fd, memoryview(frame)[written:], known.length + written)
        os.fsync(fd)
        if known.length == 0:
            files.fsync_dir(path.parent)  # the file's name is durable too
    except BaseException:
        _close(known)  # reopened (and cut back to `length`) by the next attempt
        raise
    names = dict(known.names)
    names[index] = name
    return _Known(known.length + len(frame), names, fd), None


def _close(known: _Known | None) -> None:
    if known is not None and known.fd is not None:
        fd, known.fd = known.fd, None
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_steps(path: Path) -> list[RecordedStep]:
    frames, _ = read_frames(_read_file(path))
    return [
        RecordedStep(frame.index, frame.name, decode_step(frame.value), frame.recorded_at)
        for frame in latest(frames)
    ]


def _write_whole(path: Path, frames: list[Frame]) -> None:
    """Write a file of `frames` at once (temp, fsync, rename): bringing steps from elsewhere."""
    temp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    fd = files.open_private(temp)
    try:
        data = b"".join(encode_frame(f.index, f.name, f.recorded_at, f.value) for f in frames)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    files.fsync_dir(path.parent)


def _remove(directory: Path, workflow_ids: list[str]) -> None:
    removed = False
    for workflow_id in workflow_ids:
        try:
            (directory / f"{workflow_id}.steps").unlink()
            removed = True
        except FileNotFoundError:
            continue
    if removed:
        files.fsync_dir(directory)


def _list_ids(directory: Path) -> list[str]:
    return [
        match.group(1)
        for entry in os.scandir(directory)
        if (match := _NAME.fullmatch(entry.name)) is not None
    ]


class StepLog:
    """The recorded steps of every workflow of one store (see the module docstring). Workflow
    ids are validated by the store before they reach here."""

    def __init__(self, directory: Path, *, max_step_bytes: int) -> None:
        self._dir = directory
        self._max_step_bytes = max_step_bytes
        self._executor = ThreadPoolExecutor(STEP_THREADS, thread_name_prefix="store-steps")
        self._known: dict[str, _Known] = {}
        self._locks = KeyedLocks()

    def _path(self, workflow_id: str) -> Path:
        return self._dir / f"{workflow_id}.steps"

    async def _run[T](self, function: Any, *args: object) -> T:
        loop = asyncio.get_running_loop()
        result: T = await loop.run_in_executor(self._executor, function, *args)
        return result

    async def record(
        self, workflow_id: str, index: int, name: str, value: object, recorded_at: float
    ) -> str | None:
        """Record step `index` durably (see the module docstring). None once written; the name
        already recorded under `index` if it is another one (then nothing was written).
        StepNotStorable / StepTooLarge for a value the store does not take; OSError if the disk
        refuses (nothing counts as recorded; the next attempt cuts what was half-written)."""
        async with self._locks.hold(workflow_id):
            known: _Known
            recorded: str | None
            known, recorded = await self._run(
                _append,
                self._path(workflow_id),
                self._known.get(workflow_id),
                index,
                name,
                value,
                recorded_at,
                self._max_step_bytes,
            )
            self._known[workflow_id] = known
        return recorded

    async def read(self, workflow_id: str) -> list[RecordedStep]:
        """The workflow's recorded steps, by index, their values as JSON reads them back."""
        async with self._locks.hold(workflow_id):
            steps: list[RecordedStep] = await self._run(_read_steps, self._path(workflow_id))
        return steps

    async def forget(self, workflow_id: str) -> None:
        """Close the workflow's file and stop keeping what is known of it (it finished); read
        again if it records another step. Nothing to do (no thread hop) for a workflow that
        recorded no step here: most finishes."""
        if workflow_id not in self._known:
            return
        async with self._locks.hold(workflow_id):
            await self._run(_close, self._known.pop(workflow_id, None))

    async def bring(self, workflow_id: str, frames: list[Frame]) -> None:
        """Make `frames` the workflow's steps (replacing its file): steps from an older store."""
        async with self._locks.hold(workflow_id):
            await self._run(_close, self._known.pop(workflow_id, None))
            await self._run(_write_whole, self._path(workflow_id), frames)

    async def remove(self, workflow_ids: list[str]) -> None:
        """Delete the workflows' step files (their folder fsynced): they went with their rows."""
        for workflow_id in workflow_ids:
            if workflow_id in self._known:
                await self.forget(workflow_id)
        await self._run(_remove, self._dir, list(workflow_ids))

    async def workflow_ids(self) -> list[str]:
        """Every workflow that has a step file."""
        ids: list[str] = await self._run(_list_ids, self._dir)
        return ids

    async def close(self) -> None:
        """Close the files still open (workflows that did not finish) and take no more work;
        appends already running finish first (their callers wait for them)."""
        for workflow_id in list(self._known):
            await self.forget(workflow_id)
        self._executor.shutdown(wait=False)
