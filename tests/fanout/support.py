"""Helpers for the fanout tests: real aiohttp sinks and an aiosmtpd mailbox on explicit 127.0.0.1
ports, a recording `send_dm`, settings and notice builders, and polling waits."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import email
import email.policy
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web

from notifier.config import Settings
from notifier.events import Event, Notice
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxRow, OutboxStatus
from notifier.plugins import PluginContext

WEBHOOK_ID = "112233445566778899"
WEBHOOK_TOKEN = "wHk-T0ken_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"


def free_port() -> int:
    """A port nothing listens on right now (bound and released), for an explicit bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    what: str = "condition",
    limit_s: float = 20.0,
) -> None:
    """Poll until `check` holds. The limit only stops a broken test from hanging; it asserts
    nothing about speed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# HTTP sinks


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    @property
    def key(self) -> str | None:
        return self.headers.get("Idempotency-Key")


@dataclass
class HttpSink:
    """A real aiohttp server on 127.0.0.1:`port` that records every request.

    `mode`: "ok" answers 200 (Discord-style message JSON); "hang" holds the request until the test
    ends or sets `release` (then answers `release_status`). `statuses` are answered first, one per request (e.g. [429, 500]), then `mode` applies.
    `on_receive` runs inside the handler, before answering: tests use it to look at the world at
    the exact moment a notice arrives.
    """

    port: int
    mode: str = "ok"
    statuses: collections.deque[tuple[int, Any]] = field(default_factory=collections.deque)
    received: list[Received] = field(default_factory=list)
    open_requests: int = 0
    on_receive: Callable[[Received], Awaitable[None]] | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    release_status: int = 503
    runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def json_url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    def keys(self) -> list[str | None]:
        return [r.key for r in self.received]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = await request.json() if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        got = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
        )
        if self.on_receive is not None:
            await self.on_receive(got)
        self.received.append(got)  # after the hook: a test waiting on `received` sees its effects
        if self.statuses:
            status, payload = self.statuses.popleft()
            return web.json_response(payload, status=status)
        if self.mode == "hang":
            self.open_requests += 1
            try:
                await self.release.wait()
            finally:
                self.open_requests -= 1
            return web.json_response({"id": "held"}, status=self.release_status)
        return web.json_response({"id": str(len(self.received)), "type": 0}, status=200)

    async def start(self) -> HttpSink:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


# ---------------------------------------------------------------------------------------------
# SMTP


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int
    mailbox: _Mailbox

    @property
    def messages(self) -> list[EmailMessage]:
        return self.mailbox.messages

    def url(self, *, to: str = "ops@example.com", userinfo: str = "") -> str:
        auth = f"{userinfo}@" if userinfo else ""
        return f"mailto://{auth}127.0.0.1:{self.port}?from=bot@example.com&to={to}"


# ---------------------------------------------------------------------------------------------
# DMs, context, settings, notices


@dataclass
class DMRecorder:
    """A stand-in for the bot's send_dm that records DMs. `fail_always[user_id]` is raised on every
    call for that user; `fail_next[user_id]` is consumed one exception per call, then DMs work."""

    sent: list[tuple[int, str, dict[str, Any] | None]] = field(default_factory=list)
    fail_always: dict[int, BaseException] = field(default_factory=dict)
    fail_next: dict[int, list[BaseException]] = field(default_factory=dict)
    nonces: list[tuple[int, str | None]] = field(default_factory=list)

    async def __call__(
        self, user_id: int, content: str, embed: dict[str, Any] | None, nonce: str | None = None
    ) -> None:
        self.nonces.append((user_id, nonce))
        if user_id in self.fail_always:
            raise self.fail_always[user_id]
        queue = self.fail_next.get(user_id)
        if queue:
            raise queue.pop(0)
        self.sent.append((user_id, content, embed))

    def to(self, user_id: int) -> list[tuple[int, str, dict[str, Any] | None]]:
        return [dm for dm in self.sent if dm[0] == user_id]


class DiscordHTTPError(Exception):
    """Shaped like nextcord.HTTPException: `status` and Discord's JSON `code`."""

    def __init__(self, status: int, code: int, text: str) -> None:
        super().__init__(f"{status} ({code}): {text}")
        self.status = status
        self.code = code


def with_api_base(context: PluginContext, sink: HttpSink) -> PluginContext:
    return dataclasses.replace(context, discord_api_base=sink.api_base)


def make_settings(tmp_path: Path, notifiers: list[dict[str, Any]], **fanout: Any) -> Settings:
    """Settings with fast retries, an outbox in tmp_path, and only the built-in plugins unless
    `plugin_dirs` is given."""
    section: dict[str, Any] = {
        "plugin_dirs": [],
        "timeout": 5.0,
        "max_attempts": 3,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "outbox_path": str(tmp_path / "outbox.sqlite3"),
    }
    section.update(fanout)
    return Settings.model_validate(
        {"storage": {"path": str(tmp_path / "data")}, "fanout": section, "notifiers": notifiers}
    )


def make_notice(event: Event = Event.COMPLETED, **fields: Any) -> Notice:
    values: dict[str, Any] = {
        "workflow_id": uuid.uuid4().hex,
        "user_id": 111,
        "user_name": "alice",
        "command": "autointel",
        "guild_id": 42,
        "channel_id": 4242,
        "options": {"url": "https://example.org", "depth": "deep"},
        "summary": "3 pages analysed",
        "duration_s": 754.0,
    }
    values.update(fields)
    return Notice(event=event, **values)


@asynccontextmanager
async def open_fanout(
    settings: Settings, context: PluginContext, **kwargs: Any
) -> AsyncIterator[Fanout]:
    fanout = await Fanout.open(settings, context, **kwargs)
    try:
        yield fanout
    finally:
        await fanout.close(drain_timeout_s=0.5)


async def rows_of(fanout: Fanout, notifier: str | None = None) -> list[OutboxRow]:
    return await fanout.outbox.rows(notifier=notifier, limit=None)


async def settled(fanout: Fanout, count: int | None = None) -> list[OutboxRow]:
    """Wait until no row is pending (and there are `count` rows, if given); return them."""

    async def done() -> bool:
        rows = await rows_of(fanout)
        return (count is None or len(rows) == count) and all(
            r.status is not OutboxStatus.PENDING for r in rows
        )

    await eventually(done, what="every outbox row settled")
    return await rows_of(fanout)
