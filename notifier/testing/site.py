"""A small web site on 127.0.0.1 for `/autointel` to analyse, slow on purpose when asked, and a
resolver that answers names from a table.

The demo and the bot tests use it so a workflow can outlast a short interaction TTL without any
traffic leaving the machine. Every request is recorded in `hits`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web

from .loopback import LoopbackServer

__all__ = ["DemoSite", "table_resolver"]


def table_resolver(names: Mapping[str, Sequence[str]]) -> Callable[[str], Awaitable[list[str]]]:
    """A resolver to inject in place of getaddrinfo (the autointel guard's `resolver`): answers
    a name in `names` (case and a trailing dot ignored) with its addresses, and raises like
    getaddrinfo for any other, so a test that strays toward a real name fails instead of sending
    a DNS query."""

    async def resolve(host: str) -> list[str]:
        await asyncio.sleep(0)
        try:
            return list(names[host.rstrip(".").lower()])
        except KeyError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None

    return resolve


_WORDS = [
    "resilient",
    "delivery",
    "keeps",
    "every",
    "workflow",
    "result",
    "safe",
    "while",
    "discord",
    "tokens",
    "expire",
    "and",
    "sessions",
    "close",
    "the",
    "bot",
    "hands",
    "off",
    "progress",
    "to",
    "a",
    "channel",
    "message",
    "or",
    "a",
    "direct",
    "message",
]


def _page(index: int, pages: int) -> str:
    links = " ".join(f'<a href="/page/{i}">Page {i}</a>' for i in range(1, pages) if i != index)
    words = " ".join(_WORDS[(index + i) % len(_WORDS)] for i in range(120 + 15 * index))
    title = "Resilience Handbook" if index == 0 else f"Handbook chapter {index}"
    return (
        f"<!doctype html><html><head><title>{title}</title></head><body>"
        f"<h1>{title}</h1><h2>Section {index}.1</h2><p>{words}</p>"
        f'<nav>{links} <a href="https://example.org/elsewhere">Elsewhere</a></nav>'
        "</body></html>"
    )


class DemoSite(LoopbackServer):
    """`pages` linked HTML pages; each answer waits `delay_s` seconds first."""

    METHOD = "GET"

    def __init__(self, *, pages: int = 6, delay_s: float = 0.0) -> None:
        self.pages = pages
        self.delay_s = delay_s
        self.hits: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if request.path == "/":
            index = 0
        elif request.path.startswith("/page/") and request.path[6:].isdigit():
            index = int(request.path[6:])
            if not 0 < index < self.pages:
                raise web.HTTPNotFound()
        else:
            raise web.HTTPNotFound()
        return web.Response(text=_page(index, self.pages), content_type="text/html")
