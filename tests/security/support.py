"""Local stand-ins for notifier targets (an SMTP server, a JSON webhook) and bot helpers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

from notifier.app import NotifierBot
from notifier.records import DeliveryState, WorkflowRecord
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator
from notifier.testing.loopback import LoopbackServer
from notifier.testing.project_bot import bot_settings, running_bot

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# SMTP: accepts mail but offers no AUTH, so a mailto:// URL with a password fails to log in


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.original_content or envelope.content))
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    mailbox: _Mailbox

    def url(self, userinfo: str) -> str:
        return f"mailto://{userinfo}@127.0.0.1:{self.port}?from=bot@example.com&to=ops@example.com"


@contextlib.contextmanager
def smtp_server() -> Any:
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller.port, mailbox)
    finally:
        controller.stop()


# ---------------------------------------------------------------------------------------------
# A hostile JSON sink: answers 500 with the decoded credentials and the path in its error body


@dataclass
class EchoSink(LoopbackServer):
    received: list[dict[str, Any]] = field(default_factory=list)
    failures_left: int = 1

    def json_url(self, userinfo: str) -> str:
        return f"json://{userinfo}@127.0.0.1:{self.port}/notices"

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        auth = request.headers.get("Authorization", "")
        decoded = base64.b64decode(auth.split()[1]).decode() if auth.startswith("Basic ") else ""
        self.received.append({"auth": decoded, "body": json.loads(raw or b"{}")})
        if self.failures_left > 0:
            self.failures_left -= 1
            return web.json_response(
                {"error": f"cannot accept {request.path} for {decoded}"}, status=500
            )
        return web.json_response({"ok": True})


# ---------------------------------------------------------------------------------------------
# The bot


@contextlib.asynccontextmanager
async def project_bot(
    emulator: DiscordEmulator,
    data_dir: Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    config_path: Path | None = None,
) -> AsyncIterator[NotifierBot]:
    """The real bot with overrides known only at run time; waits for its start-up recovery."""
    settings = bot_settings(emulator, data_dir, overrides)
    async with running_bot(emulator, settings, config_path=config_path) as bot:
        await asyncio.wait_for(bot.recovered.wait(), 30.0)
        yield bot


async def wait_until(predicate: Any, timeout_s: float = 30.0, interval_s: float = 0.05) -> None:
    """Poll a condition that lives outside the emulator (store rows, outbox, sinks)."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(interval_s)


async def settled_record(bot: NotifierBot, workflow_id: str) -> WorkflowRecord:
    """The workflow's row once its delivery is decided."""

    async def done() -> bool:
        record = await bot.store.get(workflow_id)
        return record is not None and record.delivery_state is not DeliveryState.PENDING

    await wait_until(done)
    record = await bot.store.get(workflow_id)
    assert record is not None
    return record


async def newest_record(bot: NotifierBot, known: set[str]) -> WorkflowRecord:
    """The one workflow row that is not in `known`, once it exists."""
    found: list[WorkflowRecord] = []

    async def appeared() -> bool:
        found[:] = [r for r in await bot.store.search(ResultQuery()) if r.workflow_id not in known]
        return bool(found)

    await wait_until(appeared)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------------------------
# A workflow the test steers (stands in for /autointel's body)


class Steered:
    """Reports progress, then waits for `release`; finishes with `result`, fails with
    `fail_with` (WorkflowFailed) or crashes with `crash_with` (any exception)."""

    def __init__(self, result: dict[str, Any] | None = None) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_with: str | None = None
        self.crash_with: BaseException | None = None
        self.result = result or {"title": "Steered result", "summary": "made by the test"}

    async def validate(self, options: Mapping[str, str]) -> dict[str, str]:
        return {"url": options.get("url", ""), "depth": options.get("depth", "quick")}

    async def run(self, options: Mapping[str, str], report: Any) -> dict[str, Any]:
        from notifier.workflows import WorkflowFailed

        report(stage="working", progress=0.1)
        self.started.set()
        await self.release.wait()
        if self.crash_with is not None:
            raise self.crash_with
        if self.fail_with is not None:
            raise WorkflowFailed(self.fail_with)
        return dict(self.result)

    def install(self, bot: NotifierBot) -> None:
        from notifier.workflows import WorkflowSpec

        bot.workflows["autointel"] = WorkflowSpec(
            name="autointel", description="steered by a test", validate=self.validate, run=self.run
        )
