"""Result files are written in groups, and every write still keeps its own fate.

`ResultFileWriter` writes the results that arrive together from one thread: every temp, then
every fsync, then every rename, then one fsync of the folder. These tests use the real disk; the
real fsyncs are wrapped (not replaced) to see what each one covered, or made to fail for one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import pytest

from notifier.store import file_writer, files
from notifier.store.file_writer import MAX_GROUP, ResultFileWriter


@dataclass
class _Fsync:
    names_at_start: set[str]
    ended_at: float = 0.0


@pytest.fixture
def folder_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[_Fsync]:
    seen: list[_Fsync] = []
    real = files.fsync_dir

    def recording(directory: Path) -> None:
        entry = _Fsync(set(os.listdir(directory)))
        seen.append(entry)
        time.sleep(0.005)  # a disk that takes its time: later writes pile up meanwhile
        real(directory)
        entry.ended_at = time.monotonic()

    monkeypatch.setattr(files, "fsync_dir", recording)
    return seen


def _ids(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


async def test_writes_that_arrive_together_share_groups_and_each_waits_for_its_folder_fsync(
    tmp_path: Path, folder_fsyncs: list[_Fsync]
) -> None:
    writer = ResultFileWriter(tmp_path)
    returned_at: dict[str, float] = {}

    async def write(workflow_id: str) -> None:
        await writer.write(workflow_id, f'{{"id": "{workflow_id}"}}\n'.encode())
        returned_at[files.result_name(workflow_id)] = time.monotonic()

    ids = _ids(60)
    await asyncio.gather(*(write(w) for w in ids))
    await writer.close()

    assert sorted(os.listdir(tmp_path)) == sorted(files.result_name(w) for w in ids)
    for w in ids:
        assert (tmp_path / files.result_name(w)).read_bytes() == f'{{"id": "{w}"}}\n'.encode()
    assert writer.groups < len(ids) / 3, f"{writer.groups} groups for {len(ids)} writes"
    assert len(folder_fsyncs) == writer.groups
    for name, returned in returned_at.items():
        covering = [f for f in folder_fsyncs if name in f.names_at_start and f.ended_at <= returned]
        assert covering, f"{name} returned before any folder fsync that saw its rename"


async def test_one_write_at_a_time_gets_its_own_folder_fsync(
    tmp_path: Path, folder_fsyncs: list[_Fsync]
) -> None:
    writer = ResultFileWriter(tmp_path)
    for workflow_id in _ids(3):
        await writer.write(workflow_id, b"{}\n")
    await writer.close()

    assert len(folder_fsyncs) == 3
    assert len(os.listdir(tmp_path)) == 3  # the three results, no temps


async def test_a_file_whose_fsync_fails_fails_alone_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _ids(8)
    doomed = ids[3]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if f".{doomed}." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = ResultFileWriter(tmp_path)

    outcomes = await asyncio.gather(
        *(writer.write(w, b"{}\n") for w in ids), return_exceptions=True
    )
    await writer.close()

    assert writer.groups <= 2  # they really went together
    failed = [w for w, outcome in zip(ids, outcomes, strict=True) if outcome is not None]
    assert failed == [doomed]
    assert isinstance(outcomes[3], OSError) and outcomes[3].errno == errno.EIO
    assert sorted(os.listdir(tmp_path)) == sorted(files.result_name(w) for w in ids if w != doomed)


async def test_the_files_of_a_group_are_fsynced_at_the_same_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # So that the filesystem can commit them in one journal commit instead of one each. Each
    # file's fsync waits (up to 5 s) until all 8 are in flight: issued one after the other, the
    # first would wait alone and the count would stay at 1, however loaded the machine is.
    real_fsync = os.fsync
    in_flight, most = 0, 0
    lock = threading.Lock()
    together = threading.Barrier(8, timeout=5)

    def fsync(fd: int) -> None:
        nonlocal in_flight, most
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            real_fsync(fd)  # the folder's fsync, after the files'
            return
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait()
            real_fsync(fd)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(os, "fsync", fsync)
    writer = ResultFileWriter(tmp_path)

    await asyncio.gather(*(writer.write(w, b"{}\n") for w in _ids(8)))
    await writer.close()

    assert writer.groups == 1
    assert most == 8


async def test_a_failed_folder_fsync_fails_its_group_and_the_next_write_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = files.fsync_dir

    def failing_once(directory: Path) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(errno.EIO, "Input/output error")
        real(directory)

    monkeypatch.setattr(files, "fsync_dir", failing_once)
    writer = ResultFileWriter(tmp_path)
    first, second = _ids(2)

    with pytest.raises(OSError, match="Input/output"):
        await writer.write(first, b"{}\n")
    await writer.write(second, b"{}\n")
    # The store retries its own write with replace=True: the earlier rename may have landed.
    await writer.write(first, b"{}\n", replace=True)
    await writer.close()

    assert calls == 3
    assert sorted(os.listdir(tmp_path)) == sorted(files.result_name(w) for w in (first, second))


async def test_an_existing_result_is_never_replaced_unless_asked(tmp_path: Path) -> None:
    writer = ResultFileWriter(tmp_path)
    stored, twice = _ids(2)
    (tmp_path / files.result_name(stored)).write_bytes(b"theirs")

    with pytest.raises(FileExistsError):
        await writer.write(stored, b"ours")
    # The same id twice in one group: the first wins, the second is told, like any other.
    outcomes = await asyncio.gather(
        writer.write(twice, b"first"), writer.write(twice, b"second"), return_exceptions=True
    )
    await writer.write(stored, b"ours again", replace=True)
    await writer.close()

    assert outcomes[0] is None and isinstance(outcomes[1], FileExistsError)
    assert (tmp_path / files.result_name(twice)).read_bytes() == b"first"
    assert (tmp_path / files.result_name(stored)).read_bytes() == b"ours again"
    assert len(os.listdir(tmp_path)) == 2  # no temps


async def test_a_crowd_larger_than_a_group_lands_in_bounded_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real = file_writer._write_group

    def recording(directory: Path, group: list[file_writer._Write], fsyncs: Executor) -> None:
        sizes.append(len(group))
        real(directory, group, fsyncs)

    monkeypatch.setattr(file_writer, "_write_group", recording)
    writer = ResultFileWriter(tmp_path)
    ids = _ids(MAX_GROUP * 3 + 5)

    await asyncio.gather(*(writer.write(w, b"{}\n") for w in ids))
    await writer.close()

    assert sum(sizes) == len(ids)
    assert max(sizes) == MAX_GROUP  # never more files open at once than a group
    assert len(os.listdir(tmp_path)) == len(ids)


async def test_close_waits_for_queued_writes_and_then_refuses_new_ones(tmp_path: Path) -> None:
    writer = ResultFileWriter(tmp_path)
    ids = _ids(20)
    writes = [asyncio.create_task(writer.write(w, b"{}\n")) for w in ids]
    await asyncio.sleep(0)  # queued, not yet written

    await writer.close()

    assert all(task.done() and task.exception() is None for task in writes)
    assert len(os.listdir(tmp_path)) == len(ids)
    with pytest.raises(RuntimeError, match="closed"):
        await writer.write(_ids(1)[0], b"{}\n")
