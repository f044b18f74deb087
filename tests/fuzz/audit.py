"""Which paths this process touches, seen through `sys.addaudithook`.

CPython raises an audit event for every `open()` (also `os.open`, `io.open_code`), directory listing
(`os.listdir`, `os.scandir`, `glob.glob`), rename, removal, mkdir, chmod and SQLite connect, in
whatever thread the call runs (aiofiles and `asyncio.to_thread` use worker threads). A hook can not
be removed, so one is installed on first use and records only inside a `touched_paths()` block.

Opening Python source or bytecode under the interpreter's prefix is an import, not a data access;
it is left out (a lazy import may happen during the first example of a run).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["outside", "touched_paths"]

# event -> positions of its path arguments
_PATH_ARGS: dict[str, tuple[int, ...]] = {
    "open": (0,),
    "os.listdir": (0,),
    "os.scandir": (0,),
    "glob.glob": (0,),
    "glob.glob/2": (0, 2),
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.mkdir": (0,),
    "os.rmdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.link": (0, 1),
    "os.symlink": (0, 1),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (0, 1),
    "shutil.move": (0, 1),
    "sqlite3.connect": (0,),
}
_CODE_SUFFIXES = (".py", ".pyc", ".so", ".pth")
_PREFIXES = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})

_lock = threading.Lock()
_recording: list[tuple[str, str]] | None = None
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _recording is None:
        return
    positions = _PATH_ARGS.get(event)
    if positions is None:
        return
    for position in positions:
        if position >= len(args):
            continue
        value = args[position]
        if isinstance(value, int) or value is None:  # a file descriptor: opened earlier
            continue
        try:
            path = os.path.abspath(os.fsdecode(value))
        except (TypeError, ValueError):
            path = repr(value)
        if path.endswith(_CODE_SUFFIXES) and path.startswith(_PREFIXES):
            continue
        with _lock:
            if _recording is not None:
                _recording.append((event, path))


@contextlib.contextmanager
def touched_paths() -> Iterator[list[tuple[str, str]]]:
    """(event, absolute path) of every file-system access while the block runs."""
    global _recording, _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    seen: list[tuple[str, str]] = []
    _recording = seen
    try:
        yield seen
    finally:
        _recording = None


def outside(touched: list[tuple[str, str]], root: str) -> list[tuple[str, str]]:
    """The accesses not under `root` (resolved, so a symlinked tmp dir does not confuse it)."""
    real_root = os.path.realpath(root)
    found = []
    for event, path in touched:
        real = os.path.realpath(path) if "\x00" not in path else path
        try:
            inside = os.path.commonpath([real, real_root]) == real_root
        except ValueError:
            inside = False
        if not inside:
            found.append((event, path))
    return found
