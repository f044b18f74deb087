"""Result files on disk: atomic, private, and never touched from the event loop itself.

Every function here that touches the disk blocks: the store runs them on its own threads
(`threads.StoreThreads`), never on the event loop (it also carries the Discord gateway heartbeat,
and a slow disk must not stall it) and never in asyncio's default pool (see `threads`). Results
themselves are written by `file_writer.ResultFileWriter`, in groups from one thread, with the
helpers here (`temp_name`, `open_private`, `fsync_dir`).

Names are built here and only here, and only from ids that `validate_workflow_id` accepted: a
result is ``<id>.json``; a write in progress is ``.<id>.<16 hex>.tmp`` in the same directory (so the
final rename never crosses a filesystem, and reconciliation can tell whose temp it is). Beside a
delivered result, ``<id>.delivered`` records how it was delivered (see `delivery_mark`); its write
in progress is ``.<id>.<16 hex>.delivered.tmp``.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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
    "make_private",
    "mark_name",
    "mark_temp_name",
    "missing",
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
_MARK = re.compile(r"([0-9a-f]{32})\.delivered")
_MARK_TEMP = re.compile(r"\.([0-9a-f]{32})\.[0-9a-f]{16}\.delivered\.tmp")
_MARK_SUFFIX: Final = ".delivered"


def result_name(workflow_id: str) -> str:
    """The file name of a result. `workflow_id` must already be validated."""
    return f"{workflow_id}.json"


def mark_name(workflow_id: str) -> str:
    """The file name of a result's delivery mark. `workflow_id` must already be validated."""
    return f"{workflow_id}{_MARK_SUFFIX}"


def relative_path(workflow_id: str) -> str:
    """Where a result lives relative to the store's root, as the index records it (the index's
    copy is informational: paths are always rebuilt from the validated id)."""
    return f"{RESULTS_DIR}/{result_name(workflow_id)}"


def temp_name(workflow_id: str) -> str:
    return f".{workflow_id}.{secrets.token_hex(8)}.tmp"


def mark_temp_name(workflow_id: str) -> str:
    # Not matched by _TEMP: reconciliation must never mistake a mark for a partial result.
    return f".{workflow_id}.{secrets.token_hex(8)}{_MARK_SUFFIX}.tmp"


def open_private(path: Path) -> int:
    """Create `path` for writing: a new file, 0600, never through a symlink.

    O_EXCL: a temp name is never reused, so an existing file means something is wrong and must
    not be truncated. O_NOFOLLOW: a planted symlink is refused, not followed.
    """
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE
    )
    os.fchmod(fd, FILE_MODE)  # the umask may only take bits away, but be exact anyway
    return fd


def fsync_dir(directory: Path) -> None:
    """Make the renames and removals in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(directory: Path) -> None:
    """Create `directory` (and parents) if needed and make it 0700: results are users' data."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, DIR_MODE)


def ensure_private_file(path: Path) -> None:
    """Create `path` empty if missing and make it 0600 (SQLite gives its -wal and -shm files the
    mode of the database file, so creating it private first keeps all three private)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def make_private(paths: Iterable[Path]) -> None:
    """chmod 0600 the files of `paths` that exist (a copy restored by hand may be readable)."""
    for path in paths:
        try:
            path.chmod(FILE_MODE)
        except FileNotFoundError:
            continue


def read_bytes(path: Path) -> bytes:
    """The whole file, read without following a symlink (a result path is ours: a symlink
    there was planted, and must not hand another file to a user)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Listing:
    """What a results directory holds, sorted by kind. Ids come from names that matched the strict
    patterns, so they are safe to build paths from again."""

    results: dict[str, int]  # workflow id -> size in bytes
    temps: list[tuple[str, str]]  # (file name, workflow id) of result temps
    marks: set[str]  # workflow ids with a delivery mark
    mark_temps: list[tuple[str, str]]  # (file name, workflow id) of delivery marks being written
    unknown: list[str]  # names this store never writes; left alone


def list_results(directory: Path) -> Listing:
    results: dict[str, int] = {}
    temps: list[tuple[str, str]] = []
    marks: set[str] = set()
    mark_temps: list[tuple[str, str]] = []
    unknown: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                unknown.append(entry.name)
                continue
            if match := _RESULT.fullmatch(entry.name):
                results[match.group(1)] = entry.stat(follow_symlinks=False).st_size
            elif match := _MARK.fullmatch(entry.name):
                marks.add(match.group(1))
            elif match := _TEMP.fullmatch(entry.name):
                temps.append((entry.name, match.group(1)))
            elif match := _MARK_TEMP.fullmatch(entry.name):
                mark_temps.append((entry.name, match.group(1)))
            else:
                unknown.append(entry.name)
    return Listing(
        results=results, temps=temps, marks=marks, mark_temps=mark_temps, unknown=unknown
    )


def missing(paths: Iterable[Path]) -> list[Path]:
    """The paths of `paths` that do not exist (lstat: a dangling symlink exists)."""
    return [path for path in paths if not os.path.lexists(path)]


def quarantine(path: Path, quarantine_dir: Path) -> Path:
    """Move a bad file aside under a fresh name (never deleted, never overwriting) and return
    where it went, so an operator can inspect it."""
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


def promote_temp(temp: Path, final: Path) -> None:
    """Finish an interrupted write whose temp holds a complete, checked document."""
    fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)  # it may only have reached the page cache before the crash
    finally:
        os.close(fd)
    if final.exists():
        raise FileExistsError(final)
    os.replace(temp, final)
    fsync_dir(final.parent)


def _remove(directory: Path, names: list[str]) -> None:
    for name in names:
        (directory / name).unlink(missing_ok=True)
    if names:
        fsync_dir(directory)


def remove_results(directory: Path, workflow_ids: list[str]) -> None:
    """Delete result files and their delivery marks (missing ones are fine: a purge may be
    finishing a crashed purge; the rows' purge mark says what was meant to go)."""
    _remove(directory, [name for w in workflow_ids for name in (result_name(w), mark_name(w))])


def remove_file(path: Path) -> None:
    _remove(path.parent, [path.name])
