"""Renames share directory fsyncs, and none returns before an fsync that covers it.

`write_atomic` makes each rename durable with an fsync of the results folder, shared between
writes that land together (`files.DirectorySync`). The real fsync is wrapped, not replaced, to see
which names were in the folder when each fsync started and when it ended.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from notifier.store import files


@dataclass
class _Fsync:
    names_at_start: set[str]
    ended_at: float = 0.0


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[_Fsync]:
    seen: list[_Fsync] = []
    real = files._fsync_dir_blocking

    def recording(directory: Path) -> None:
        entry = _Fsync(set(os.listdir(directory)))
        seen.append(entry)
        time.sleep(0.005)  # a disk that takes its time: later renames pile up meanwhile
        real(directory)
        entry.ended_at = time.monotonic()

    monkeypatch.setattr(files, "_fsync_dir_blocking", recording)
    return seen


async def test_concurrent_writes_share_fsyncs_and_each_waits_for_one_that_covers_it(
    tmp_path: Path, fsyncs: list[_Fsync]
) -> None:
    directory = files.DirectorySync(tmp_path)
    returned_at: dict[str, float] = {}

    async def write(workflow_id: str) -> None:
        await files.write_atomic(directory, workflow_id, b'{"ok": true}\n')
        returned_at[files.result_name(workflow_id)] = time.monotonic()

    ids = [uuid.uuid4().hex for _ in range(60)]
    await asyncio.gather(*(write(w) for w in ids))

    assert sorted(os.listdir(tmp_path)) == sorted(files.result_name(w) for w in ids)
    assert len(fsyncs) < len(ids) / 3, f"{len(fsyncs)} fsyncs for {len(ids)} renames"
    for name, returned in returned_at.items():
        covering = [f for f in fsyncs if name in f.names_at_start and f.ended_at <= returned]
        assert covering, f"{name} returned before any fsync that saw its rename"


async def test_one_write_at_a_time_gets_its_own_fsync(tmp_path: Path, fsyncs: list[_Fsync]) -> None:
    directory = files.DirectorySync(tmp_path)

    for _ in range(3):
        await files.write_atomic(directory, uuid.uuid4().hex, b"{}\n")

    assert len(fsyncs) == 3


async def test_a_failed_fsync_fails_its_writers_and_the_next_write_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = files._fsync_dir_blocking

    def failing_once(directory: Path) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(5, "Input/output error")
        real(directory)

    monkeypatch.setattr(files, "_fsync_dir_blocking", failing_once)
    directory = files.DirectorySync(tmp_path)

    with pytest.raises(OSError):
        await files.write_atomic(directory, uuid.uuid4().hex, b"{}\n")
    await files.write_atomic(directory, uuid.uuid4().hex, b"{}\n")

    assert calls == 2
