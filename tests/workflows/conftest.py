"""A real aiohttp site on 127.0.0.1 for the autointel tests, and a resolver that never touches DNS.

The site is a small tree of linked pages plus the awkward cases (500, JSON, an endless page, a
hanging page, redirects to places the guard must refuse). Every request path is recorded in
`Site.hits`, so tests can prove what was (and was not) fetched.
"""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from notifier.testing.loopback import serve_loopback
from notifier.testing.site import table_resolver

Resolver = Callable[[str], Awaitable[list[str]]]

# Names the fake resolver knows. Anything else "does not exist", so a test that strays toward a
# real name fails instead of sending a DNS query.
FAKE_DNS: dict[str, list[str]] = {
    "localhost": ["127.0.0.1"],
    "public.test": ["93.184.215.14"],
    "intranet.test": ["10.0.0.5"],
    "metadata.test": ["169.254.169.254"],
    "dual.test": ["93.184.215.14", "10.0.0.5"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "v6private.test": ["2606:4700::1111", "fd00::1"],
}


# Injected in place of getaddrinfo: answers from FAKE_DNS, else raises like getaddrinfo.
fake_resolver = table_resolver(FAKE_DNS)


async def refusing_resolver(host: str) -> list[str]:
    """A resolver for which no name exists: validation can never reach the network."""
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def page(title: str, body: str, links: tuple[tuple[str, str], ...] = ()) -> str:
    anchors = " ".join(f'<a href="{href}">{text}</a>' for href, text in links)
    return (
        f"<!doctype html><html><head><title>{title}</title></head>"
        f"<body>{body}<nav>{anchors}</nav></body></html>"
    )


# The home page: 35 visible words, headings h1-h3 (h4 ignored), 6 internal and 2 external links.
HOME = """<!doctype html>
<html><head><title>Widget Workshop</title>
<meta name="description" content="Everything about widgets.">
<style>.hidden { color: red }</style>
<script>var hidden = "script words never count";</script>
</head>
<body>
<h1>Widget Workshop</h1>
<p>Widgets and gadgets. Widgets everywhere, widgets for everyone.</p>
<h2>Gadget corner</h2>
<p>The gadget shelf holds a widget.</p>
<h3>Contact</h3>
<h4>Ignored heading level</h4>
<a href="/about">About</a> <a href="blog">Blog</a> <a href="/blog#comments">Comments</a>
<a href="/contact">Contact us</a> <a href="/products">Products</a> <a href="/team">Team</a>
<a href="/faq">FAQ</a>
<a href="https://external.example/page">Elsewhere</a> <a href="http://other.example/">Other</a>
<a href="mailto:someone@example.org">Mail</a> <a href="javascript:void(0)">JS</a>
<a href="#top">Top</a>
</body></html>
"""

PAGES: dict[str, str] = {
    "/": HOME,
    "/about": page(
        "About us",
        "<h1>About</h1><p>We build widgets.</p>",
        (("/history", "History"), ("/", "Home"), ("/about#team", "Team section")),
    ),
    "/blog": page(
        "Blog",
        "<h1>Blog</h1><p>News about widgets.</p>",
        (
            ("/post-1", "First"),
            ("post-2", "Second"),
            ("/about", "About"),
            ("https://external.example/feed", "Feed"),
            ("/report.pdf", "Report"),
        ),
    ),
    "/contact": page("Contact", "<p>Write to us.</p>"),
    "/products": page("Products", "<p>Widgets, gadgets.</p>"),
    "/team": page("Team", "<p>Our team.</p>"),
    "/faq": page("FAQ", "<p>Questions.</p>"),
    "/history": page("History", "<p>Founded long ago.</p>"),
    "/post-1": page("First post", "<p>Hello widgets.</p>"),
    "/post-2": page("Second post", "<p>Hello again.</p>"),
    "/mixed": page(
        "Mixed bag",
        "<p>Some links work, some do not.</p>",
        (("/boom", "Boom"), ("/data", "Data"), ("/huge", "Huge"), ("/about", "About")),
    ),
    "/to-offsite": page(
        "Leaving",
        "<p>One link leaves.</p>",
        (("/redirect/offsite", "Away"), ("/contact", "Contact")),
    ),
    "/slow-link": page("Slow link", "<p>Next page hangs.</p>", (("/slow", "Slow"),)),
    "/dup": page(
        "Duplicates",
        "<p>Two roads to one page.</p>",
        (("/about", "About"), ("/redirect/about", "About again"), ("/about/", "Not the same")),
    ),
}

#: Every HTML page here stays under this; tests use it as max_page_bytes so /huge trips the cap.
PAGE_CAP_BYTES = 4096


@dataclass
class Site:
    port: int
    hits: list[str] = field(default_factory=list)
    slow_entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path


def _build_app(site: Site) -> web.Application:
    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        site.hits.append(request.path_qs)
        return await handler(request)

    app = web.Application(middlewares=[record])

    async def html(request: web.Request) -> web.Response:
        body = PAGES.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(text=body, content_type="text/html")

    async def boom(request: web.Request) -> web.Response:
        return web.Response(status=500, text="<h1>oops</h1>", content_type="text/html")

    async def data(request: web.Request) -> web.Response:
        return web.json_response({"not": "html"})

    async def huge(request: web.Request) -> web.StreamResponse:
        # Chunked, no Content-Length: only the streaming cap can stop it. Ends by itself after
        # 4 MiB so a broken cap fails the test instead of hanging it.
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        chunk = b"<p>" + b"filler " * 9000 + b"</p>"
        try:
            for _ in range(64):
                await response.write(chunk)
        except ConnectionResetError:
            pass  # the client gave up, as it should
        return response

    async def huge_declared(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (PAGE_CAP_BYTES * 4), content_type="text/html")

    async def slow(request: web.Request) -> web.Response:
        site.slow_entered.set()
        await site.release.wait()
        return web.Response(text=page("Late", "<p>Too late.</p>"), content_type="text/html")

    async def latin1(request: web.Request) -> web.Response:
        body = page("Café Crème", "<p>Déjà vu.</p>").encode("latin-1")
        return web.Response(body=body, headers={"Content-Type": "text/html; charset=iso-8859-1"})

    async def meta_charset(request: web.Request) -> web.Response:
        body = (
            '<html><head><meta charset="windows-1252"><title>Na\u00efve \u2013 test</title>'
            "</head><body><p>ok</p></body></html>"
        ).encode("cp1252")
        return web.Response(body=body, headers={"Content-Type": "text/html"})

    async def gzipped(request: web.Request) -> web.Response:
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)
        body = packer.compress(HOME.encode()) + packer.flush()
        return web.Response(
            body=body, headers={"Content-Type": "text/html", "Content-Encoding": "gzip"}
        )

    async def brotli(request: web.Request) -> web.Response:
        return web.Response(
            body=b"\x0b\x02\x80<p>x</p>\x03",
            headers={"Content-Type": "text/html", "Content-Encoding": "br"},
        )

    def redirect_to(
        location: str | Callable[[], str], status: int = 302
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            target = location() if callable(location) else location
            return web.Response(status=status, headers={"Location": target})

        return handler

    app.router.add_get("/boom", boom)
    app.router.add_get("/data", data)
    app.router.add_get("/huge", huge)
    app.router.add_get("/huge-declared", huge_declared)
    app.router.add_get("/slow", slow)
    app.router.add_get("/latin1", latin1)
    app.router.add_get("/meta-charset", meta_charset)
    app.router.add_get("/gzipped", gzipped)
    app.router.add_get("/brotli", brotli)
    app.router.add_get("/redirect/about", redirect_to("/about#top", 301))
    app.router.add_get("/redirect/chain", redirect_to("/redirect/about", 307))
    app.router.add_get("/redirect/loop", redirect_to("/redirect/loop"))
    app.router.add_get("/redirect/private", redirect_to("http://10.0.0.1/admin"))
    app.router.add_get("/redirect/metadata", redirect_to("http://169.254.169.254/latest/"))
    app.router.add_get("/redirect/intranet", redirect_to("http://intranet.test/"))
    app.router.add_get("/redirect/decimal", redirect_to("http://2130706433/"))
    app.router.add_get(
        "/redirect/other-port", redirect_to(lambda: f"http://127.0.0.1:{site.port + 1}/")
    )
    app.router.add_get("/redirect/file", redirect_to("file:///etc/passwd"))
    app.router.add_get("/redirect/offsite", redirect_to("http://public.test/"))
    app.router.add_get("/{tail:.*}", html)
    return app


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    """The site, served on an ephemeral 127.0.0.1 port for one test."""
    holder = Site(port=0)
    runner, holder.port = await serve_loopback(_build_app(holder))
    try:
        yield holder
    finally:
        holder.release.set()
        await runner.cleanup()
