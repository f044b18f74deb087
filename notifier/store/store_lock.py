"""One process at a time maintains a store: an exclusive `flock` on ``<storage.path>/lock``.

Why: two bots on one folder each believe they own it. The second marks the first one's running
workflows interrupted (then the first's real result is refused as "a different result" and never
reaches its user), both re-deliver the same pending results and both send the same outbox, so
notices arrive twice. The bot takes the lock when its store opens (``maintain=True``) and keeps it
for the life of the process; the operator's writing commands (`results purge`) take it for their
few seconds; readers (the CLI's list, show and export) never need it.

`flock` rather than a PID file: the kernel releases the lock when the holder dies, however it dies
(SIGKILL, power cut), so a stale lock never keeps a bot from starting. The holder writes its PID
into the file only so that the refusal can name it (`StoreLocked`). The file is 0600, opened
without following a symlink, and close-on-exec (a child process never inherits the lock).
The lock is per open file, so a second open in the same process is refused too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Final

from ..errors import StoreError, StoreLocked
from .files import FILE_MODE

__all__ = ["LOCK_NAME", "StoreLock"]

LOCK_NAME: Final = "lock"
_PID_BYTES_MAX: Final = 32  # a PID and a newline; anything longer is not ours


def _holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, _PID_BYTES_MAX, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 2**32 else None


class StoreLock:
    """The held lock: `acquire` (blocking) takes it, `release` (blocking) gives it back."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path) -> StoreLock:
        """Take the lock of the store at `root` (an existing folder) without waiting; write this
        process's PID into it. StoreLocked if another process (or another open in this one)
        holds it; StoreError if the lock file cannot be used at all."""
        path = root / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise StoreError(f"cannot open the store's lock file {path}: {exc.strerror}") from exc
        try:
            os.fchmod(fd, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise StoreLocked(str(root), _holder_pid(fd)) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except StoreLocked:
            os.close(fd)
            raise
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock the store at {root}: {exc.strerror}") from exc
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Clear the PID and let go (idempotent). Closing the descriptor is what unlocks."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # while still held: nobody reads a PID that no longer holds it
        os.close(fd)
