"""Helpers for the README tests: polling, free ports, a recording HTTP sink, the bot as a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from notifier.testing.loopback import LoopbackServer
from notifier.testing.processes import CapturedProcess

from .readme import ROOT

STEP_LIMIT_S = 30.0


async def eventually(check: Callable[[], Any], *, what: str, limit_s: float = STEP_LIMIT_S) -> None:
    """Poll `check` (sync or async) until it is true. The limit only keeps a broken test from
    hanging; nothing here asserts how fast anything is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script_env(**extra: str) -> dict[str, str]:
    """The environment for `scripts/...`: this one without Discord settings, reusing the venv that
    runs the tests (so the scripts' venv check finds it installed instead of building one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "DISCORD_API_BASE")}
    if "NOTIFIER_VENV" not in env and sys.prefix != sys.base_prefix:
        env["NOTIFIER_VENV"] = sys.prefix
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# A recording HTTP sink


@dataclass
class HttpSink(LoopbackServer):
    """An aiohttp server on 127.0.0.1 that records each request and answers `statuses` first
    (one per request), then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[str, str, bytes]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((request.method, request.path, await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status < 400}, status=status)


# ---------------------------------------------------------------------------------------------
# The bot (or any script) as a real process, its output read as it comes


@dataclass
class Process(CapturedProcess):
    async def wait_for(
        self, predicate: Callable[[], bool | Awaitable[bool]], what: str, limit_s: float = 60.0
    ) -> None:
        """Poll `predicate`; fail with the process's output if it exits or the limit passes."""

        async def check() -> bool:
            value = predicate()
            if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
                value = await value
            if not value and self.process.returncode is not None:
                raise AssertionError(
                    f"the process exited ({self.process.returncode}) while waiting for {what}:\n"
                    + self.output()
                )
            return bool(value)

        try:
            await eventually(check, what=what, limit_s=limit_s)
        except AssertionError as exc:
            if "never happened" in str(exc):
                raise AssertionError(f"{exc}\n{self.output()}") from None
            raise


@contextlib.asynccontextmanager
async def process(*argv: str, env: dict[str, str], cwd: Path = ROOT) -> AsyncIterator[Process]:
    """Start `argv`; kill it (by its own pid) if the test leaves it running."""
    running = await Process.start(*argv, env=env, cwd=cwd)
    try:
        yield running
    finally:
        await running.kill()
