"""Result files on disk: atomic, private, and never written from the event loop itself.

Every blocking call (open, write, fsync, rename, unlink, listing, chmod) runs in a worker thread,
because the loop also carries the Discord gateway heartbeat and a slow disk must not stall it.
Reads go through aiofiles. Results themselves are written by `file_writer.ResultFileWriter`, in
groups from one thread, with the helpers here (`temp_name`, `open_private`, `fsync_dir`).

Names are built here and only here, and only from ids that `validate_workflow_id` accepted: a
result is ``<id>.json``; a write in progress is ``.<id>.<16 hex>.tmp`` in the same directory (so the
final rename never crosses a filesystem, and reconciliation can tell whose temp it is).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiofiles

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "QUARANTINE_DIR",
    "RESULTS_DIR",
    "Listing",
    "ensure_private_dir",
    "ensure_private_file",
    "fsync_dir",
    "list_results",
    "open_private",
    "promote_temp",
    "quarantine",
    "read_bytes",
    "relative_path",
    "remove_file",
    "remove_results",
    "result_name",
    "temp_name",
]

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
RESULTS_DIR: Final = "results"
QUARANTINE_DIR: Final = "quarantine"

_RESULT = re.compile(r"([0-9a-f]{32})\.json")
_TEMP = re.compile(r"\.([0-9a-f]{32})\.[0-9a-f]{16}\.tmp")


def result_name(workflow_id: str) -> str:
    """The file name of a result. `workflow_id` must already be validated."""
    return f"{workflow_id}.json"


def relative_path(workflow_id: str) -> str:
    """Where a result lives relative to the store's root, as the index records it (the index's
    copy is informational: paths are always rebuilt from the validated id)."""
    return f"{RESULTS_DIR}/{result_name(workflow_id)}"


def temp_name(workflow_id: str) -> str:
    return f".{workflow_id}.{secrets.token_hex(8)}.tmp"


def open_private(path: Path) -> int:
    """Create `path` for writing (blocking): a new file, 0600, never through a symlink.

    O_EXCL: a temp name is never reused, so an existing file means something is wrong and must
    not be truncated. O_NOFOLLOW: a planted symlink is refused, not followed.
    """
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE
    )
    os.fchmod(fd, FILE_MODE)  # the umask may only take bits away, but be exact anyway
    return fd


def fsync_dir(directory: Path) -> None:
    """Make the renames and removals in `directory` durable (blocking)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir_blocking(directory: Path) -> None:
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, DIR_MODE)


async def ensure_private_dir(directory: Path) -> None:
    """Create `directory` (and parents) if needed and make it 0700: results are users' data."""
    await asyncio.to_thread(_ensure_dir_blocking, directory)


def _ensure_file_blocking(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


async def ensure_private_file(path: Path) -> None:
    """Create `path` empty if missing and make it 0600 (SQLite gives its -wal and -shm files the
    mode of the database file, so creating it private first keeps all three private)."""
    await asyncio.to_thread(_ensure_file_blocking, path)


async def read_bytes(path: Path) -> bytes:
    async with aiofiles.open(path, "rb") as handle:
        return await handle.read()


@dataclass(frozen=True, slots=True)
class Listing:
    """What a results directory holds, sorted by kind. Ids come from names that matched the strict
    patterns, so they are safe to build paths from again."""

    results: dict[str, int]  # workflow id -> size in bytes
    temps: list[tuple[str, str]]  # (file name, workflow id)
    unknown: list[str]  # names this store never writes; left alone


def _list_blocking(directory: Path) -> Listing:
    results: dict[str, int] = {}
    temps: list[tuple[str, str]] = []
    unknown: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                unknown.append(entry.name)
                continue
            if match := _RESULT.fullmatch(entry.name):
                results[match.group(1)] = entry.stat(follow_symlinks=False).st_size
            elif match := _TEMP.fullmatch(entry.name):
                temps.append((entry.name, match.group(1)))
            else:
                unknown.append(entry.name)
    return Listing(results=results, temps=temps, unknown=unknown)


async def list_results(directory: Path) -> Listing:
    return await asyncio.to_thread(_list_blocking, directory)


def _quarantine_blocking(path: Path, quarantine_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    while True:
        target = quarantine_dir / f"{path.name.lstrip('.')}.{stamp}.{secrets.token_hex(4)}"
        if not target.exists():
            break
    os.rename(path, target)
    os.chmod(target, FILE_MODE)
    fsync_dir(quarantine_dir)
    fsync_dir(path.parent)
    return target


async def quarantine(path: Path, quarantine_dir: Path) -> Path:
    """Move a bad file aside under a fresh name (never deleted, never overwriting) and return
    where it went, so an operator can inspect it."""
    return await asyncio.to_thread(_quarantine_blocking, path, quarantine_dir)


def _promote_blocking(temp: Path, final: Path) -> None:
    fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)  # it may only have reached the page cache before the crash
    finally:
        os.close(fd)
    if final.exists():
        raise FileExistsError(final)
    os.replace(temp, final)
    fsync_dir(final.parent)


async def promote_temp(temp: Path, final: Path) -> None:
    """Finish an interrupted write whose temp holds a complete, checked document."""
    await asyncio.to_thread(_promote_blocking, temp, final)


def _remove_blocking(directory: Path, names: list[str]) -> None:
    for name in names:
        (directory / name).unlink(missing_ok=True)
    if names:
        fsync_dir(directory)


async def remove_results(directory: Path, workflow_ids: list[str]) -> None:
    """Delete result files (missing ones are fine: a purge may be finishing a crashed purge)."""
    await asyncio.to_thread(_remove_blocking, directory, [result_name(w) for w in workflow_ids])


async def remove_file(path: Path) -> None:
    await asyncio.to_thread(_remove_blocking, path.parent, [path.name])
