"""A recording HTTP sink on 127.0.0.1 that notifiers post to, for tests that check what operators
were told.

One class plays every part a test needs: what Apprise's ``json://`` and the native JSON sender post
to, a stand-in for Discord's webhook API (`api_base`), a server that fails (`statuses`), one that
hangs (`holding`), one whose error bodies repeat what it was sent (`on_receive` queues the answer),
and one that goes down and comes back on the same port (`close()`, then `start()`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .loopback import LoopbackServer

__all__ = ["HttpSink", "Received"]


@dataclass
class Received:
    """One request the sink got, and its answer (`status` stays None while the request is held,
    and for good if the sink stopped first: the sender never heard back)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes = field(repr=False)
    body: Any  # the JSON value, else the text; None for an empty body
    status: int | None = None

    @property
    def key(self) -> str | None:
        """The `Idempotency-Key` header: how a receiver tells a resend from a new notice."""
        return self.headers.get("Idempotency-Key")

    @property
    def title(self) -> str:
        """The notice's `title` (Apprise's JSON payload), or "" for any other body."""
        return str(self.body.get("title", "")) if isinstance(self.body, dict) else ""

    @property
    def basic_auth(self) -> str:
        """`user:password` from an HTTP Basic `Authorization` header, or ""."""
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return ""
        try:
            return base64.b64decode(value).decode("utf-8", "replace")
        except binascii.Error:
            return ""

    @property
    def ok(self) -> bool:
        """Answered with a 2xx: the sender was told it arrived."""
        return self.status is not None and 200 <= self.status < 300


# An answer queued in `statuses`: a status (with a small JSON body), or a status and its body.
Answer = int | tuple[int, Any]


@dataclass
class HttpSink(LoopbackServer):
    """Records every request in `received` (in arrival order) and answers it.

    * `statuses` are answered first, one per request (`500`, or `(429, {"retry_after": 0.05})`);
      then 200. A 429 carries `Retry-After: 0` (a body's `retry_after` still wins for Discord
      senders).
    * While `holding` is set, each request is held unanswered (`held` counts them) until
      `release()`; then it is answered like any other. Requests still held when the sink closes
      end unanswered: their sender (often a killed process) never hears back.
    * `on_receive` runs for each request before it is recorded and answered: a test looks at
      the world at that exact moment, or queues the answer (an error body naming the request).
    * `port` 0 binds a free port; `close()` then `start()` reopens the same one.
    """

    port: int = 0
    received: list[Received] = field(default_factory=list)
    statuses: deque[Answer] = field(default_factory=deque)
    holding: bool = False
    held: int = 0
    on_receive: Callable[[Received], Awaitable[None]] | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _closures: int = field(default=0, init=False, repr=False)

    # -- addresses ---------------------------------------------------------------------------

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def json_url(self, path: str = "/hook", *, userinfo: str = "") -> str:
        """The Apprise ``json://`` URL of `path` (`userinfo`: `user:password` for Basic auth)."""
        auth = f"{userinfo}@" if userinfo else ""
        return f"json://{auth}127.0.0.1:{self.port}{path}"

    @property
    def api_base(self) -> str:
        """Discord's API base, as a plugin context's `discord_api_base` (webhook posts land here)."""
        return f"http://127.0.0.1:{self.port}/api/v10"

    # -- what arrived ------------------------------------------------------------------------

    def bodies(self, naming: str | None = None) -> list[dict[str, Any]]:
        """The JSON objects of the requests answered 2xx; with `naming`, only those that contain
        it (a workflow id, say)."""
        return [
            r.body
            for r in self.received
            if r.ok
            and isinstance(r.body, dict)
            and (naming is None or naming in json.dumps(r.body, ensure_ascii=False))
        ]

    def titles(self, naming: str | None = None) -> list[str]:
        return [str(body.get("title", "")) for body in self.bodies(naming)]

    def keys(self) -> list[str | None]:
        """The `Idempotency-Key` of every request, in arrival order."""
        return [r.key for r in self.received]

    # -- steering ----------------------------------------------------------------------------

    def release(self) -> None:
        """Stop holding: the held requests are answered now, later ones at once."""
        self.holding = False
        event, self._release = self._release, asyncio.Event()
        event.set()

    async def close(self) -> None:
        self._closures += 1
        event, self._release = self._release, asyncio.Event()
        event.set()  # held requests end now, unanswered
        await super().close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        got = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            raw=raw,
            body=body,
        )
        if self.on_receive is not None:
            await self.on_receive(got)
        self.received.append(got)  # after the hook: a test waiting on `received` sees its effects
        if self.holding:
            closures, released = self._closures, self._release
            self.held += 1
            try:
                await released.wait()
            finally:
                self.held -= 1
            if self._closures != closures:
                return web.json_response({"ok": False}, status=503)  # into a closed connection
        answer = self.statuses.popleft() if self.statuses else 200
        status, payload = answer if isinstance(answer, tuple) else (answer, None)
        got.status = status
        if payload is None:
            payload = {"ok": 200 <= status < 300}
        headers = {"Retry-After": "0"} if status == 429 else None
        return web.json_response(payload, status=status, headers=headers)
