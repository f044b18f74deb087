"""`/autointel url depth`: fetch a web page, crawl its site breadth-first and report what it says.

A real crawl that may run for many minutes (`page_delay` between pages, up to 40 pages), which is
why it is the example workflow: the result has to survive the interaction token expiring.

Every request goes through the SSRF guard twice: each URL, including every redirect hop (followed
by hand, at most MAX_REDIRECTS), is checked with `NetGuard.check` before it is requested, and the
session's connector judges the addresses it actually connects to. Pages are read as a stream and
abandoned past `max_page_bytes`; only text/html and application/xhtml+xml are analysed. Pages are
fetched still compressed (gzip or deflate, the only encodings asked for; aiohttp's own inflating
is off because it inflates a whole 2 MiB page in one callback on the loop) and inflated by the page
worker, which stops at `max_page_bytes` too: a gzip bomb fails like any oversized page.

Nothing a page says is decoded or parsed here: its bytes go to the shared page workers
(`pagepool`), which decode them with the web's encodings only (`charsets`), parse them with a
linear-time parser (`analysis`) under a CPU, wall-clock and memory limit, and send back a bounded
`PageSummary`. Each summary is folded into the run's running totals (`_Totals`) and dropped, so a
run holds a few hundred kilobytes however many or however hostile its pages are. A page over a
limit fails like any page: a failing sub-page is recorded in the result's `errors`; a failing
start page fails the run with WorkflowFailed. Cancellation is never caught (a page being analysed
is stopped by killing its worker).

Each page, fetched and analysed, is a recorded step (`page:N`, its value what the crawl keeps of
it, failures included): a run resumed after a restart replays the pages it had done, refetching
none of them, and rebuilds its totals, queue and links from the recorded values. Everything
outside the steps depends on those values only, so a replay takes the same path.

It is an ordinary workflow (`AUTOINTEL`, a class workflow: one `Autointel` per bot holds the
guard and the page workers, `close` stops them), found through the `notifier.workflows` entry
point like any installed one; its slash command is read from `Autointel.run`'s signature.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, get_args

import aiohttp
from aiohttp import hdrs
from yarl import URL

from ..config import AutointelSettings, Settings
from .analysis import (
    Heading,
    most_frequent_in_order,
    reading_time_min,
    same_origin,
    top_keywords,
)
from .api import Context, workflow
from .contract import InvalidWorkflowOptions, WorkflowFailed, WorkflowSpec
from .netguard import AddressRefused, NetGuard, Resolver, URLRefused, parse_http_url
from .pagepool import PagePool, PageRejected
from .pagewire import CONTENT_ENCODINGS, LinkKind, PageSummary

__all__ = [
    "AUTOINTEL",
    "DEFAULT_DEPTH",
    "DEPTHS",
    "MAX_KEYWORDS_PER_RUN",
    "MAX_LINKS_COUNTED_PER_RUN",
    "MAX_REDIRECTS",
    "NAME",
    "STAGES",
    "Autointel",
    "Depth",
    "build_autointel",
]

NAME: Final = "autointel"
Depth = Literal["quick", "standard", "deep", "comprehensive"]
DEPTHS: Final[tuple[str, ...]] = get_args(Depth)
DEFAULT_DEPTH: Final = "standard"
#: How long a run of each depth takes before there is history (seconds), for the timeout warning.
ESTIMATES_S: Final = {"quick": 30.0, "standard": 180.0, "deep": 900.0, "comprehensive": 1800.0}
#: The stages reported, in order; "crawling" and "analysing" repeat once per sub-page.
STAGES: Final = ("fetching", "analysing", "crawling", "summarising")
MAX_REDIRECTS: Final = 5
TOP_KEYWORDS: Final = 10
#: Distinct links a run counts (by 64-bit hash); past it the counts stop growing. 40 pages of
#: 1,000 links each stay under it.
MAX_LINKS_COUNTED_PER_RUN: Final = 50_000
#: Keyword candidates a run keeps between pages; past it the most frequent half is kept.
MAX_KEYWORDS_PER_RUN: Final = 4000

_DEFAULT_PAGES: Final = {"quick": 1, "standard": 5, "deep": 15, "comprehensive": 40}
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_ACCEPT: Final = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
_ACCEPT_ENCODING: Final = "gzip, deflate"
_CHUNK_BYTES: Final = 64 * 1024
_MAX_QUEUE: Final = 1000
_PAGES_SHARE: Final = 0.95  # of the progress bar; summarising takes the rest


class _PageFailed(Exception):
    """One page could not be analysed. `status` is "error" or "skipped" (not HTML, off-site)."""

    def __init__(self, message: str, *, status: str = "error", http_status: int | None = None):
        self.message = message
        self.status = status
        self.http_status = http_status
        super().__init__(message)


class _AlreadyAnalysed(Exception):
    """A sub-page redirects to a page this run has analysed: not fetched again, not counted."""

    def __init__(self, url: URL) -> None:
        self.url = url
        super().__init__(str(url))


@dataclass(frozen=True, slots=True)
class _Page:
    url: URL  # after redirects
    http_status: int
    body: bytearray  # as served: still compressed with `encoding`; read into, never copied
    charset: str | None  # as the Content-Type header says; the worker decides what it means
    encoding: str  # the Content-Encoding, lowercase, one of CONTENT_ENCODINGS


@dataclass
class _Totals:
    """A run's running totals: each page's summary is folded in and dropped."""

    site: URL
    first: PageSummary | None = None
    pages_analysed: int = 0
    word_count: int = 0
    keywords: Counter[str] = field(default_factory=Counter)
    internal: set[int] = field(default_factory=set)
    external: set[int] = field(default_factory=set)

    def fold(self, summary: PageSummary) -> None:
        if self.first is None:
            self.first = summary
        self.pages_analysed += 1
        self.word_count += summary.word_count
        for word, count in summary.keywords:
            self.keywords[word] += count
        if len(self.keywords) > MAX_KEYWORDS_PER_RUN:
            kept = most_frequent_in_order(self.keywords, MAX_KEYWORDS_PER_RUN // 2)
            self.keywords = Counter(dict(kept))
        for link, kind in summary.links:
            if len(self.internal) + len(self.external) >= MAX_LINKS_COUNTED_PER_RUN:
                break
            (self.external if kind is LinkKind.ELSEWHERE else self.internal).add(hash(link))


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


class Autointel:
    """The autointel workflow of one bot: its settings, network guard and page workers. Holds no
    connections: each `run` opens (and closes) its own aiohttp session, so runs are independent
    and may overlap; they share the page workers (`pages`), which `close` stops.

    Built once per bot from the bot's settings (`AUTOINTEL.bind(settings)`). The guard defaults
    to one built from `autointel.allow_private_networks` and `resolver` (None: the system
    resolver); pass `guard` instead to set more (tests use its `exempt_endpoints`). The page
    workers default to a new pool of `autointel.analysis_workers` processes (started when the
    first page needs one) that `close` stops; a `pages` pool passed in is shared and left to its
    owner to close.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver | None = None,
        guard: NetGuard | None = None,
        pages: PagePool | None = None,
    ) -> None:
        if guard is not None and resolver is not None:
            raise TypeError("pass either resolver or guard, not both")
        own = settings.autointel
        self._settings = own
        self._guard = guard or NetGuard(
            allow_private=own.allow_private_networks,
            resolver=resolver,
            resolve_timeout_s=own.connect_timeout,
        )
        self._owns_pages = pages is None
        self.pages = pages or PagePool(
            workers=own.analysis_workers, page_cpu_s=own.analysis_cpu_seconds
        )

    async def close(self) -> None:
        """Stop the page workers this workflow started (a page being analysed fails). For the
        bot's shutdown; a pool passed in is its owner's to close."""
        if self._owns_pages:
            await self.pages.close()

    # -- options -------------------------------------------------------------------------------

    async def validate(self, url: str, depth: Depth) -> dict[str, str]:
        """Check the URL before anything starts, including the SSRF check (which may resolve
        the host, hence async); the depth is one of DEPTHS already. Returns the URL normalised,
        which is what is stored and run."""
        try:
            checked = await self._guard.check(_start_url(url))
        except URLRefused as exc:
            raise InvalidWorkflowOptions("url", exc.reason) from None
        return {"url": str(checked)}

    def pages_for(self, depth: str) -> int:
        """Page budget for `depth` (start page included); settings may leave a depth out."""
        return max(1, self._settings.pages.get(depth, _DEFAULT_PAGES[depth]))

    def max_steps(self, *, url: str, depth: str = "standard", **_: object) -> int:
        """The most steps a run records: one per page of its budget (the resume notice's "of up
        to 15 pages")."""
        return self.pages_for(depth)

    # -- run -----------------------------------------------------------------------------------

    async def run(
        self,
        ctx: Context,
        url: Annotated[str, "The page to analyse (http or https)"],
        depth: Annotated[Depth, "How many pages of the site to analyse"] = DEFAULT_DEPTH,
    ) -> dict[str, Any]:
        """Analyse the start page and up to `pages_for(depth) - 1` same-origin pages.

        Raises WorkflowFailed when the start page cannot be analysed, InvalidWorkflowOptions if
        the URL was never validated and is wrong.
        """
        start_url = _start_url(url)
        max_pages = self.pages_for(depth)
        share = _PAGES_SHARE / max_pages

        def share_of(index: int, fraction: float) -> float:
            return min(_PAGES_SHARE, (index + fraction) * share)

        settings = self._settings
        timeout = aiohttp.ClientTimeout(
            total=settings.connect_timeout + settings.read_timeout,
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )
        headers = {
            hdrs.USER_AGENT: settings.user_agent,
            hdrs.ACCEPT: _ACCEPT,
            hdrs.ACCEPT_ENCODING: _ACCEPT_ENCODING,
        }
        pages: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []

        async with aiohttp.ClientSession(
            connector=self._guard.connector(),
            timeout=timeout,
            headers=headers,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
        ) as session:
            ctx.progress(stage="fetching", fraction=0.0, detail=f"fetching {start_url}")
            visit = await ctx.step(
                "page:0", self._visit, ctx, session, start_url, site=None, index=0, share=share
            )
            if visit["status"] != "ok":
                raise WorkflowFailed(f"could not analyse {start_url}: {visit['error']}")
            site = URL(visit["url"])
            first = PageSummary.from_wire(visit["summary"])
            totals = _Totals(site=site)
            totals.fold(first)
            pages.append(self._page_entry(site, "ok", visit["http_status"], first))

            # Links as the workers wrote them (yarl's text of a normalised URL); parsed back into
            # a URL only when their turn comes.
            seen: set[str] = {str(start_url), str(site)}
            done: set[URL] = {site}
            queue: deque[str] = deque()

            def enqueue(summary: PageSummary) -> None:
                for link, kind in summary.links:
                    if len(queue) >= _MAX_QUEUE:
                        return
                    if kind is LinkKind.SITE_PAGE and link not in seen:
                        seen.add(link)
                        queue.append(link)

            enqueue(first)
            del first
            attempted = 1
            while queue and attempted < max_pages:
                if settings.page_delay > 0 and not ctx.replaying:
                    await asyncio.sleep(settings.page_delay)
                next_url = URL(queue.popleft())
                index = attempted
                attempted += 1
                ctx.progress(
                    stage="crawling",
                    fraction=share_of(index, 0.0),
                    detail=f"page {attempted} of up to {max_pages}: {next_url}",
                )
                visit = await ctx.step(
                    f"page:{index}",
                    self._visit,
                    ctx,
                    session,
                    next_url,
                    site=site,
                    analysed=done,
                    index=index,
                    share=share,
                )
                status, page_url = visit["status"], URL(visit["url"])
                if visit["fetched"]:
                    done.add(page_url)
                    seen.add(str(page_url))
                if status != "ok":
                    if status != "duplicate":
                        errors.append({"url": str(page_url), "error": visit["error"]})
                    pages.append(self._page_entry(page_url, status, visit["http_status"], None))
                    continue
                summary = PageSummary.from_wire(visit["summary"])
                totals.fold(summary)
                pages.append(self._page_entry(page_url, "ok", visit["http_status"], summary))
                enqueue(summary)

        ctx.progress(
            stage="summarising",
            fraction=_PAGES_SHARE,
            detail=f"summarising {_plural(totals.pages_analysed, 'page')}",
        )
        result = self._result(start_url, depth, totals, pages, errors)
        ctx.progress(stage="summarising", fraction=1.0, detail="done")
        return result

    async def _visit(
        self,
        ctx: Context,
        session: aiohttp.ClientSession,
        url: URL,
        *,
        site: URL | None,
        index: int,
        share: float,
        analysed: Collection[URL] = (),
    ) -> dict[str, Any]:
        """One page of the crawl, fetched and analysed: the step `page:N`, so its value (what
        the crawl keeps of the page, as JSON) is recorded and a resumed run does not fetch it
        again. A page that fails is a value too (`status` error, skipped or duplicate): it is
        not fetched again either. `fetched` says the URL was reached (after redirects)."""
        try:
            page = await self._fetch(session, url, site=site, analysed=analysed)
        except _PageFailed as exc:
            return _visited(url, exc.status, exc.http_status, error=exc.message)
        except _AlreadyAnalysed as exc:
            return _visited(exc.url, "duplicate", None)
        page_url, http_status = page.url, page.http_status
        ctx.progress(
            stage="analysing",
            fraction=min(_PAGES_SHARE, (index + 0.5) * share),
            detail=f"analysing {page_url}",
        )
        try:
            summary = await self._analyse(page, site=site or page_url, index=index)
        except _PageFailed as exc:
            return _visited(page_url, "error", http_status, error=exc.message, fetched=True)
        finally:
            del page  # the page's bytes are not kept once analysed
        return _visited(page_url, "ok", http_status, summary=summary.to_wire(), fetched=True)

    async def _analyse(self, page: _Page, *, site: URL, index: int) -> PageSummary:
        """The page's summary from a page worker; _PageFailed when it is over a limit. `index`
        (pages of this run before this one) is its place in the workers' queue."""
        try:
            return await self.pages.analyse(
                page.body,
                url=page.url,
                site=site,
                charset=page.charset,
                encoding=page.encoding,
                max_bytes=self._settings.max_page_bytes,
                priority=index,
            )
        except PageRejected as exc:
            raise _PageFailed(exc.reason, http_status=page.http_status) from None

    # -- fetching ------------------------------------------------------------------------------

    async def _fetch(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        *,
        site: URL | None,
        analysed: Collection[URL] = (),
    ) -> _Page:
        """GET `url`, following up to MAX_REDIRECTS redirects by hand so that every hop passes
        the guard before it is requested. With `site`, a redirect off that origin skips the page
        (the crawl stays on the site; the start page may move, e.g. http -> https); a redirect
        to a URL in `analysed` raises _AlreadyAnalysed instead of fetching it again."""
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                checked = await self._guard.check(current)
            except URLRefused as exc:
                raise _PageFailed(exc.reason) from None
            try:
                async with session.get(checked, allow_redirects=False) as response:
                    if response.status not in _REDIRECTS:
                        return await self._read(response, checked)
                    location = response.headers.get(hdrs.LOCATION)
                    if not location:
                        raise _PageFailed(
                            f"the server answered HTTP {response.status} without a Location",
                            http_status=response.status,
                        )
                    if hop == MAX_REDIRECTS:
                        raise _PageFailed(f"more than {MAX_REDIRECTS} redirects")
                    try:
                        current = checked.join(URL(location)).with_fragment(None)
                    except (ValueError, TypeError):
                        raise _PageFailed("redirected to an invalid URL") from None
                    if site is not None and not same_origin(current, site):
                        raise _PageFailed(
                            f"redirects off the site (to {current.host})", status="skipped"
                        )
                    if current in analysed:
                        raise _AlreadyAnalysed(current)
            except URLRefused as exc:  # from the connector's resolver
                raise _PageFailed(exc.reason) from None
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, AddressRefused):
                    raise _PageFailed(exc.os_error.reason) from None
                reason = exc.os_error.strerror or "connection failed"
                raise _PageFailed(f"could not connect to {checked.host} ({reason})") from None
            except TimeoutError:  # before ClientError: aiohttp's timeouts are both
                raise _PageFailed("the server took too long to answer") from None
            except aiohttp.ClientError as exc:
                raise _PageFailed(f"the connection failed ({type(exc).__name__})") from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def _read(self, response: aiohttp.ClientResponse, url: URL) -> _Page:
        """The body of an HTML page, read as a stream and abandoned past max_page_bytes (leaving
        the `async with` closes the connection instead of draining the rest)."""
        status = response.status
        if not 200 <= status < 300:
            raise _PageFailed(f"the server answered HTTP {status}", http_status=status)
        content_type = response.content_type
        if content_type not in _HTML_TYPES:
            raise _PageFailed(
                f"not an HTML page (content type {content_type[:60]})",
                status="skipped",
                http_status=status,
            )
        encoding = response.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        if encoding not in CONTENT_ENCODINGS:
            raise _PageFailed(
                f"the page is compressed as {encoding[:20]!r}, which is not supported",
                http_status=status,
            )
        cap_bytes = self._settings.max_page_bytes
        too_large = _PageFailed(f"the page is larger than {cap_bytes:,} bytes", http_status=status)
        if response.content_length is not None and response.content_length > cap_bytes:
            raise too_large
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            body += chunk
            if len(body) > cap_bytes:
                raise too_large
        return _Page(
            url=url,
            http_status=status,
            body=body,
            charset=response.charset,
            encoding=encoding,
        )

    # -- result --------------------------------------------------------------------------------

    @staticmethod
    def _page_entry(
        url: URL, status: str, http_status: int | None, summary: PageSummary | None
    ) -> dict[str, Any]:
        return {
            "url": str(url),
            "title": summary.title if summary else "",
            "word_count": summary.word_count if summary else 0,
            "status": status,
            "http_status": http_status,
        }

    @staticmethod
    def _result(
        start_url: URL,
        depth: str,
        totals: _Totals,
        pages: list[dict[str, Any]],
        errors: list[dict[str, str]],
    ) -> dict[str, Any]:
        first = totals.first
        assert first is not None  # the start page was folded in first
        keywords = top_keywords(totals.keywords, TOP_KEYWORDS)
        minutes = reading_time_min(totals.word_count)
        internal, external = len(totals.internal), len(totals.external)
        result: dict[str, Any] = {
            "url": str(start_url),
            "final_url": str(totals.site),
            "title": first.title,
            "summary": "",
            "depth": depth,
            "pages_analysed": totals.pages_analysed,
            "word_count": totals.word_count,
            "reading_time_min": minutes,
            "top_keywords": [[word, count] for word, count in keywords],
            "headings": [{"level": h.level, "text": h.text} for h in first.headings],
            "links": {"internal": internal, "external": external},
            "pages": pages,
            "errors": errors,
        }
        result["summary"] = _summary(
            totals.site, depth, first, totals.pages_analysed, totals.word_count, minutes,
            keywords, internal, external, len(errors),
        )  # fmt: skip
        return result


def _summary(
    final_url: URL,
    depth: str,
    first: PageSummary,
    page_count: int,
    word_count: int,
    minutes: float,
    keywords: list[tuple[str, int]],
    internal: int,
    external: int,
    error_count: int,
) -> str:
    """One readable paragraph; every sentence is built from counted facts, nothing invented."""
    name = f"“{first.title}” ({final_url})" if first.title else str(final_url)
    sentences = [
        f"{name} was analysed at {depth} depth: {_plural(page_count, 'page')}, "
        f"{_plural(word_count, 'word')} of visible text, about {minutes:g} min of reading."
    ]
    if first.description:
        sentences.append(f"It describes itself as “{first.description}”.")
    if keywords:
        terms = [f"{word} ({count})" for word, count in keywords[:5]]
        listed = terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + f" and {terms[-1]}"
        sentences.append(f"The most frequent terms are {listed}.")
    headings: tuple[Heading, ...] = first.headings
    if headings:
        sentences.append(
            f"The start page has {_plural(len(headings), 'heading')}, "
            f"the first being “{headings[0].text}”."
        )
    sentences.append(
        f"The analysed pages link to {internal:,} distinct page"
        f"{'' if internal == 1 else 's'} on the site and {external:,} elsewhere."
    )
    if error_count:
        sentences.append(f"{_plural(error_count, 'page')} could not be analysed (see errors).")
    return " ".join(sentences)


def _visited(
    url: URL,
    status: str,
    http_status: int | None,
    *,
    error: str = "",
    summary: dict[str, Any] | None = None,
    fetched: bool = False,
) -> dict[str, Any]:
    """The recorded value of one page's step (see `Autointel._visit`)."""
    return {
        "url": str(url),
        "status": status,
        "http_status": http_status,
        "error": error,
        "summary": summary,
        "fetched": fetched,
    }


def _start_url(url: str) -> URL:
    try:
        return parse_http_url(url)
    except URLRefused as exc:
        raise InvalidWorkflowOptions("url", exc.reason) from None


AUTOINTEL: Final = workflow(
    name=NAME,
    description="Analyse a web site (can take a while)",
    estimate_s=ESTIMATES_S,
)(Autointel)


def build_autointel(
    settings: AutointelSettings,
    *,
    resolver: Resolver | None = None,
    guard: NetGuard | None = None,
    pages: PagePool | None = None,
) -> WorkflowSpec:
    """The autointel WorkflowSpec for these settings, as the bot builds it, with a resolver, a
    guard or a page pool of the caller's (see `Autointel`): for tests and benchmarks."""
    return AUTOINTEL.spec_for(
        Autointel(Settings(autointel=settings), resolver=resolver, guard=guard, pages=pages)
    )
