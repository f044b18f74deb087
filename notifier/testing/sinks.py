"""Sinks on 127.0.0.1 that notifiers post to, for tests that check what operators were told."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .loopback import LoopbackServer

__all__ = ["JsonSink"]


@dataclass
class JsonSink(LoopbackServer):
    """What Apprise's ``json://`` (and the native JSON sender) posts to: every request recorded;
    `statuses` are answered first, one per request, then 200."""

    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)

    def json_url(self, path: str = "/hook", *, userinfo: str = "") -> str:
        auth = f"{userinfo}@" if userinfo else ""
        return f"json://{auth}127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.received if isinstance(r["body"], dict)]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        status = self.statuses.popleft() if self.statuses else 200
        self.received.append(
            {"path": request.path, "headers": dict(request.headers), "body": body, "status": status}
        )
        return web.json_response({"ok": status == 200}, status=status)
