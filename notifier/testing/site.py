"""A small web site on 127.0.0.1 for `/autointel` to analyse, slow on purpose when asked, a
hostile one whose every page is written to hurt a crawler, and a resolver that answers names from
a table.

The demo and the bot tests use `DemoSite` so a workflow can outlast a short interaction TTL
without any traffic leaving the machine; the hostile-page test and `bench.hostile` use
`HostileSite`. Every request is recorded in `hits`.
"""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

from aiohttp import web

from .loopback import LoopbackServer

__all__ = ["HOSTILE_KINDS", "DemoSite", "HostileSite", "table_resolver"]


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


#: Where a HostileSite lists the paths requested so far (JSON), for a test or benchmark that
#: serves it from a child process so that writing its 2 MiB bodies costs their loop nothing.
HITS_PATH: Final = "/_hits"

#: The pages of a HostileSite, each at `/<kind>` (see `HostileSite`).
HOSTILE_KINDS: Final = (
    "punycode-header",
    "punycode-meta",
    "tag-run",
    "links",
    "gzip-bomb",
    "nesting",
    "words",
    "attributes",
)
# What `/l/<n>` serves, in turn: every kind but the CPU hog, so a long crawl meets each often.
_LINKED_KINDS: Final = tuple(kind for kind in HOSTILE_KINDS if kind != "attributes")


def _fill(head: bytes, unit: bytes, size_bytes: int, tail: bytes = b"") -> bytes:
    return head + unit * max(0, (size_bytes - len(head) - len(tail)) // len(unit)) + tail


def _numbered(head: bytes, pattern: bytes, size_bytes: int) -> bytes:
    """`head`, then `pattern` filled with 0, 1, 2, ... (every `%d` in it) up to about
    `size_bytes`: markup in which every unit is distinct."""
    parts = [head]
    total, index = len(head), 0
    slots = pattern.count(b"%d")
    while total < size_bytes - 64:
        part = pattern % ((index,) * slots)
        parts.append(part)
        total += len(part)
        index += 1
    return b"".join(parts)


def _hostile_body(kind: str, size_bytes: int) -> bytes:
    title = f"<html><head><title>Hostile {kind}</title>".encode()
    if kind in ("punycode-header", "punycode-meta"):
        # Python's punycode decoder is quadratic in what follows the last "-": 100 KB of it take
        # 0.6 s, 1 MiB about a minute.
        meta = b'<meta charset="punycode">' if kind == "punycode-meta" else b""
        return _fill(title + meta + b"</head><body><p>punycode page</p>-", b"a", size_bytes // 2)
    if kind == "tag-run":  # html.parser: quadratic (48 KB took 22 s)
        return _fill(title + b"</head><body>", b"<a ", size_bytes)
    if kind == "links":  # every link distinct, every one on the site
        return _numbered(title + b"</head><body>", b'<a href="/l/%d">link %d</a>\n', size_bytes)
    if kind == "nesting":
        return _fill(title + b"</head><body>", b"<div>", size_bytes)
    if kind == "words":  # all different: a keyword counter's worst case
        return _numbered(title + b"</head><body><p>", b"w%dq ", size_bytes)
    if kind == "attributes":  # libxml2 compares each attribute name with every earlier one
        return _numbered(title + b"</head><body><a", b" a%d=1", size_bytes) + b">x</a>"
    raise ValueError(f"unknown hostile page kind {kind!r}")


def _gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip stream of a page that inflates to `inflated_bytes` (about 1,000 to 1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1024 * 1024)
    parts = [packer.compress(b"<html><head><title>Hostile gzip-bomb</title></head><body>")]
    for _ in range(max(1, inflated_bytes // len(chunk))):
        parts.append(packer.compress(chunk))
    parts.append(packer.flush())
    return b"".join(parts)


class HostileSite(LoopbackServer):
    """A site of pages written to hurt a crawler, each just under `page_bytes`:

    - `/punycode-header` and `/punycode-meta`: declared `charset=punycode` (by the Content-Type
      header, by `<meta>`), with a body that Python's punycode codec takes minutes to decode;
    - `/tag-run`: `"<a " * n`, quadratic for `html.parser`;
    - `/links`: distinct same-site links (`/l/<n>`) filling the page;
    - `/gzip-bomb`: `Content-Encoding: gzip`, a few tens of KB that inflate to `bomb_bytes`;
    - `/nesting`: `"<div>" * n`; `/words`: distinct words filling the page;
    - `/attributes`: one tag with distinct attributes filling the page (libxml2 is quadratic in
      them: a page worker's CPU limit has to stop it);
    - `/`: a small page linking to every one, and `/l/<n>` serves the kinds in turn (all but
      `attributes`), so a crawl of any length meets hostile pages only.

    Bodies are built once, in the constructor (a second or so), not while serving.
    """

    METHOD = "GET"

    def __init__(
        self, *, page_bytes: int = 2 * 1024 * 1024 - 4096, bomb_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.page_bytes = page_bytes
        self.hits: list[str] = []
        self._bodies = {
            kind: _hostile_body(kind, page_bytes) for kind in HOSTILE_KINDS if kind != "gzip-bomb"
        }
        self._bodies["gzip-bomb"] = _gzip_bomb(bomb_bytes)
        links = "".join(f'<li><a href="/{kind}">{kind}</a></li>' for kind in HOSTILE_KINDS)
        self._index = (
            "<html><head><title>Hostile site</title></head><body><h1>Hostile site</h1>"
            f"<ul>{links}</ul></body></html>"
        ).encode()

    def url(self, kind: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{kind}"

    def body(self, kind: str) -> bytes:
        """The bytes served for `kind` (for the gzip bomb, compressed)."""
        return self._bodies[kind]

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path == HITS_PATH:  # for a site served from another process; not a hit
            return web.json_response(self.hits)
        self.hits.append(request.path)
        path = request.path.strip("/")
        if not path:
            return web.Response(body=self._index, content_type="text/html")
        if path.startswith("l/") and path[2:].isdigit():
            path = _LINKED_KINDS[int(path[2:]) % len(_LINKED_KINDS)]
        if path not in self._bodies:
            raise web.HTTPNotFound()
        headers = {"Content-Type": "text/html"}
        if path == "punycode-header":
            headers["Content-Type"] = "text/html; charset=punycode"
        elif path == "gzip-bomb":
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=self._bodies[path], headers=headers)
