"""A child process (bot.py, the CLI, a script) whose output a test reads as it comes.

Tests start the real `bot.py` and kill it at chosen moments; they need its output both while it
runs (to wait for a log line) and after (to show it when an assertion fails), and a process a
failing test leaves behind must be killed, not inherited by the next test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

__all__ = ["CapturedProcess"]


async def _pump(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    if stream is None:
        return
    while line := await stream.readline():
        into.append(line.decode("utf-8", "replace"))


@dataclass
class CapturedProcess:
    """The process and the lines it wrote so far (stdout only if captured)."""

    process: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        *argv: str,
        env: dict[str, str],
        cwd: Path,
        capture_stdout: bool = True,
        **fields: Any,
    ) -> Self:
        """Start `argv` with its output read into `stdout`/`stderr` by background tasks;
        `fields` go to a subclass's own fields."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        running = cls(process, **fields)
        running.readers = [
            asyncio.create_task(_pump(process.stdout, running.stdout)),
            asyncio.create_task(_pump(process.stderr, running.stderr)),
        ]
        return running

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return "".join(self.stdout) + "\n--- stderr ---\n" + "".join(self.stderr)

    def stderr_has(self, text: str) -> bool:
        return any(text in line for line in self.stderr)

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def finish(self, limit_s: float = 60.0) -> int:
        """Wait for the exit and for both pipes to be read to the end (TimeoutError after
        `limit_s`: a hung child fails the test instead of hanging it)."""
        code = await asyncio.wait_for(self.process.wait(), limit_s)
        await asyncio.gather(*self.readers)
        return code

    async def kill(self) -> None:
        """SIGKILL (by its own pid) if it still runs, then reap it: the cleanup after a test."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        await self.process.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)
