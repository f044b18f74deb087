"""The autointel workflow against a real aiohttp site on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from notifier.config import AutointelSettings
from notifier.testing import wait_until
from notifier.testing.site import HOSTILE_KINDS, HostileSite
from notifier.workflows import InvalidWorkflowOptions, WorkflowFailed, WorkflowSpec
from notifier.workflows.autointel import MAX_REDIRECTS, STAGES, build_autointel
from notifier.workflows.netguard import NetGuard
from notifier.workflows.pagepool import PagePool

from .conftest import PAGE_CAP_BYTES, Site, fake_resolver

# Hang guard only: a broken cancellation path must fail the test, not freeze the suite.
HANG_GUARD_S = 60


@dataclass
class Recorder:
    """A ReportProgress that keeps every report."""

    reports: list[tuple[str, float, str]] = field(default_factory=list)

    def __call__(self, *, stage: str, progress: float, detail: str = "") -> None:
        self.reports.append((stage, progress, detail))

    @property
    def stages(self) -> list[str]:
        return [stage for stage, _, _ in self.reports]

    @property
    def fractions(self) -> list[float]:
        return [fraction for _, fraction, _ in self.reports]


def settings(**overrides: Any) -> AutointelSettings:
    values: dict[str, Any] = {
        "allow_private_networks": True,
        "max_page_bytes": PAGE_CAP_BYTES,
        "connect_timeout": 30.0,
        "read_timeout": 30.0,
    }
    values.update(overrides)
    return AutointelSettings(**values)


_POOLS: list[PagePool] = []


def pages(config: AutointelSettings) -> PagePool:
    """Page workers for one spec, closed after the test (the bot closes its own at shutdown)."""
    pool = PagePool(workers=config.analysis_workers, page_cpu_s=config.analysis_cpu_seconds)
    _POOLS.append(pool)
    return pool


@pytest.fixture(autouse=True)
async def _close_page_workers() -> AsyncIterator[None]:
    yield
    while _POOLS:
        await _POOLS.pop().close()


def spec(**overrides: Any) -> WorkflowSpec:
    config = settings(**overrides)
    return build_autointel(config, resolver=fake_resolver, pages=pages(config))


async def run(workflow: WorkflowSpec, url: str, depth: str) -> tuple[dict[str, Any], Recorder]:
    recorder = Recorder()
    options = await workflow.validate({"url": url, "depth": depth})
    result = await workflow.run(options, recorder)
    return result, recorder


# ---------------------------------------------------------------------------------------------
# Depths and crawling


async def test_quick_analyses_only_the_start_page(site: Site) -> None:
    result, _ = await run(spec(), site.url("/"), "quick")

    assert site.hits == ["/"]
    assert result["url"] == site.url("/")
    assert result["final_url"] == site.url("/")
    assert result["depth"] == "quick"
    assert result["pages_analysed"] == 1
    assert result["title"] == "Widget Workshop"
    assert result["word_count"] == 35
    assert result["reading_time_min"] == 0.2
    assert result["headings"] == [
        {"level": 1, "text": "Widget Workshop"},
        {"level": 2, "text": "Gadget corner"},
        {"level": 3, "text": "Contact"},
    ]
    assert result["links"] == {"internal": 6, "external": 2}
    assert result["top_keywords"][:4] == [
        ["widgets", 3],
        ["widget", 2],
        ["gadget", 2],
        ["contact", 2],
    ]
    assert len(result["top_keywords"]) == 10
    assert all(word not in {"the", "and", "for", "a"} for word, _ in result["top_keywords"])
    assert result["pages"] == [
        {
            "url": site.url("/"),
            "title": "Widget Workshop",
            "word_count": 35,
            "status": "ok",
            "http_status": 200,
        }
    ]
    assert result["errors"] == []
    assert json.loads(json.dumps(result)) == result  # the store persists it as JSON
    summary = result["summary"]
    assert "Widget Workshop" in summary and "quick depth" in summary and "widgets (3)" in summary


async def test_standard_crawls_five_same_site_pages_breadth_first(site: Site) -> None:
    result, _ = await run(spec(), site.url("/"), "standard")

    assert site.hits == ["/", "/about", "/blog", "/contact", "/products"]
    assert result["pages_analysed"] == 5
    assert [p["url"] for p in result["pages"]] == [site.url(path) for path in site.hits]
    assert [p["title"] for p in result["pages"]] == [
        "Widget Workshop",
        "About us",
        "Blog",
        "Contact",
        "Products",
    ]
    assert result["word_count"] == sum(p["word_count"] for p in result["pages"])
    assert result["errors"] == []


async def test_deep_crawls_every_reachable_page_once_and_never_leaves_the_site(site: Site) -> None:
    result, _ = await run(spec(), site.url("/"), "deep")

    expected = [
        "/",
        "/about",
        "/blog",
        "/contact",
        "/products",
        "/team",
        "/faq",
        "/history",
        "/post-1",
        "/post-2",
    ]
    # Ten pages exist (deep allows 15): each fetched exactly once despite /about, /blog and /
    # being linked from several pages and with fragments; the PDF link is never fetched.
    assert site.hits == expected
    assert result["pages_analysed"] == 10
    assert all(p["status"] == "ok" for p in result["pages"])
    # Across all pages: 10 internal pages plus /report.pdf; two distinct external links plus
    # the blog's feed.
    assert result["links"] == {"internal": 11, "external": 3}


async def test_page_budget_comes_from_settings(site: Site) -> None:
    workflow = spec(pages={"quick": 1, "standard": 2, "deep": 3, "comprehensive": 4})
    result, _ = await run(workflow, site.url("/"), "deep")
    assert site.hits == ["/", "/about", "/blog"]
    assert result["pages_analysed"] == 3


async def test_page_delay_is_waited_between_pages(site: Site) -> None:
    # Only proves a positive delay does not break the crawl; no timing is asserted.
    result, _ = await run(spec(page_delay=0.01), site.url("/"), "standard")
    assert result["pages_analysed"] == 5


async def test_host_names_are_resolved_through_the_injected_resolver(site: Site) -> None:
    result, _ = await run(spec(), f"http://localhost:{site.port}/about", "quick")
    assert result["title"] == "About us"
    assert site.hits == ["/about"]


# ---------------------------------------------------------------------------------------------
# Progress


async def test_progress_is_monotonic_staged_and_reaches_one(site: Site) -> None:
    _, recorder = await run(spec(), site.url("/"), "standard")

    fractions = recorder.fractions
    assert fractions == sorted(fractions)
    assert all(0.0 <= fraction <= 1.0 for fraction in fractions)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert set(recorder.stages) == set(STAGES)
    assert recorder.stages[:2] == ["fetching", "analysing"]
    assert recorder.stages[-1] == "summarising"
    # One "crawling" report per sub-page, naming it.
    crawling = [detail for stage, _, detail in recorder.reports if stage == "crawling"]
    assert len(crawling) == 4
    assert site.url("/about") in crawling[0]


async def test_quick_progress_reaches_one_without_crawling(site: Site) -> None:
    _, recorder = await run(spec(), site.url("/"), "quick")
    assert "crawling" not in recorder.stages
    assert recorder.fractions == sorted(recorder.fractions)
    assert recorder.fractions[-1] == 1.0


# ---------------------------------------------------------------------------------------------
# Sub-page failures are recorded, start-page failures raise


async def test_sub_page_failures_are_recorded_not_fatal(site: Site) -> None:
    result, _ = await run(spec(), site.url("/mixed"), "standard")

    assert site.hits == ["/mixed", "/boom", "/data", "/huge", "/about"]
    assert result["pages_analysed"] == 2
    statuses = [(p["url"], p["status"], p["http_status"]) for p in result["pages"]]
    assert statuses == [
        (site.url("/mixed"), "ok", 200),
        (site.url("/boom"), "error", 500),
        (site.url("/data"), "skipped", 200),
        (site.url("/huge"), "error", 200),
        (site.url("/about"), "ok", 200),
    ]
    errors = {e["url"]: e["error"] for e in result["errors"]}
    assert set(errors) == {site.url("/boom"), site.url("/data"), site.url("/huge")}
    assert "HTTP 500" in errors[site.url("/boom")]
    assert "not an HTML page" in errors[site.url("/data")]
    assert "application/json" in errors[site.url("/data")]
    assert f"larger than {PAGE_CAP_BYTES:,} bytes" in errors[site.url("/huge")]
    assert "3 pages could not be analysed" in result["summary"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/boom", "HTTP 500"),
        ("/data", "not an HTML page (content type application/json)"),
        ("/huge", f"larger than {PAGE_CAP_BYTES:,} bytes"),
        ("/huge-declared", f"larger than {PAGE_CAP_BYTES:,} bytes"),
        ("/missing", "HTTP 404"),
        ("/redirect/loop", f"more than {MAX_REDIRECTS} redirects"),
        ("/redirect/file", "only http:// and https://"),
    ],
)
async def test_start_page_failure_raises_workflow_failed(
    site: Site, path: str, message: str
) -> None:
    workflow = spec()
    options = await workflow.validate({"url": site.url(path), "depth": "standard"})
    with pytest.raises(WorkflowFailed) as caught:
        await workflow.run(options, Recorder())
    assert message in caught.value.message
    assert site.url(path) in caught.value.message


async def test_oversize_stream_is_abandoned_not_drained(site: Site) -> None:
    # The handler streams 4 MiB; the client must give up after the cap. The only observable
    # without timing: the run fails with the cap message while the server is still writing.
    workflow = spec()
    with pytest.raises(WorkflowFailed, match="larger than"):
        await workflow.run({"url": site.url("/huge"), "depth": "quick"}, Recorder())


async def test_redirects_are_followed_and_fragments_dropped(site: Site) -> None:
    result, _ = await run(spec(), site.url("/redirect/chain"), "quick")
    assert site.hits == ["/redirect/chain", "/redirect/about", "/about"]
    assert result["url"] == site.url("/redirect/chain")
    assert result["final_url"] == site.url("/about")
    assert result["title"] == "About us"


async def test_sub_page_redirecting_to_an_analysed_page_is_not_counted_twice(site: Site) -> None:
    result, _ = await run(spec(), site.url("/dup"), "standard")
    assert site.hits == ["/dup", "/about", "/redirect/about", "/about/", "/history"]
    assert [(p["url"], p["status"]) for p in result["pages"]] == [
        (site.url("/dup"), "ok"),
        (site.url("/about"), "ok"),
        (site.url("/about"), "duplicate"),
        (site.url("/about/"), "error"),  # a different path is a different page (a 404 here)
        (site.url("/history"), "ok"),
    ]
    assert result["pages_analysed"] == 3
    assert result["errors"] == [
        {"url": site.url("/about/"), "error": "the server answered HTTP 404"}
    ]


async def test_sub_page_redirecting_off_site_is_skipped(site: Site) -> None:
    result, _ = await run(spec(), site.url("/to-offsite"), "standard")
    assert site.hits == ["/to-offsite", "/redirect/offsite", "/contact"]
    assert result["errors"] == [
        {"url": site.url("/redirect/offsite"), "error": "redirects off the site (to public.test)"}
    ]


@pytest.mark.parametrize(
    ("path", "title"),
    [("/latin1", "Café Crème"), ("/meta-charset", "Naïve – test")],
)
async def test_charset_from_header_or_meta(site: Site, path: str, title: str) -> None:
    result, _ = await run(spec(), site.url(path), "quick")
    assert result["title"] == title


async def test_run_rejects_unvalidated_bad_options(site: Site) -> None:
    with pytest.raises(InvalidWorkflowOptions) as caught:
        await spec().run({"url": site.url("/"), "depth": "bottomless"}, Recorder())
    assert caught.value.field == "depth"
    assert site.hits == []


async def test_a_gzipped_page_reads_as_the_plain_one(site: Site) -> None:
    plain, _ = await run(spec(), site.url("/"), "quick")
    zipped, _ = await run(spec(), site.url("/gzipped"), "quick")
    for key in ("title", "word_count", "headings", "top_keywords", "links"):
        assert zipped[key] == plain[key]


async def test_a_page_in_an_encoding_not_asked_for_fails(site: Site) -> None:
    with pytest.raises(WorkflowFailed) as caught:
        await run(spec(), site.url("/brotli"), "quick")
    assert "compressed as 'br', which is not supported" in caught.value.message


# ---------------------------------------------------------------------------------------------
# Hostile pages: each fails or completes within its limits, and the run reports which


HOSTILE_PAGE_BYTES = 512 * 1024


@pytest.fixture
async def hostile() -> AsyncIterator[HostileSite]:
    async with HostileSite(page_bytes=HOSTILE_PAGE_BYTES, bomb_bytes=32 * 1024 * 1024) as server:
        yield server


def hostile_spec(**overrides: Any) -> WorkflowSpec:
    values: dict[str, Any] = {"max_page_bytes": HOSTILE_PAGE_BYTES, "analysis_cpu_seconds": 0.5}
    values.update(overrides)
    return spec(**values)


async def test_a_crawl_of_hostile_pages_records_each_failure_and_completes(
    hostile: HostileSite,
) -> None:
    pages = {"quick": 1, "standard": 5, "deep": 1 + len(HOSTILE_KINDS), "comprehensive": 40}
    result, _ = await run(hostile_spec(pages=pages), hostile.url(), "deep")

    assert hostile.hits == ["/", *(f"/{kind}" for kind in HOSTILE_KINDS)]
    statuses = {p["url"].rsplit("/", 1)[-1]: p["status"] for p in result["pages"]}
    assert statuses == {
        "": "ok",
        "punycode-header": "ok",
        "punycode-meta": "ok",
        "tag-run": "ok",
        "links": "ok",
        "gzip-bomb": "error",
        "nesting": "ok",
        "words": "ok",
        "attributes": "error",
    }
    assert result["errors"] == [
        {
            "url": hostile.url("gzip-bomb"),
            "error": f"the page is larger than {HOSTILE_PAGE_BYTES:,} bytes",
        },
        {
            "url": hostile.url("attributes"),
            "error": "analysing the page used more than 0.5 s of CPU",
        },
    ]
    titles = {p["url"].rsplit("/", 1)[-1]: p["title"] for p in result["pages"]}
    # Declared punycode, read as UTF-8: the title is there, undamaged.
    assert titles["punycode-header"] == "Hostile punycode-header"
    assert titles["punycode-meta"] == "Hostile punycode-meta"
    assert result["pages_analysed"] == 7
    # The links page holds about 20,000 distinct links; a page keeps 1,000 of them.
    assert result["links"] == {"internal": 8 + 1000, "external": 0}
    assert len(json.dumps(result)) < 20_000


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("attributes", "analysing the page used more than 0.5 s of CPU"),
        ("gzip-bomb", f"the page is larger than {HOSTILE_PAGE_BYTES:,} bytes"),
    ],
)
async def test_a_start_page_over_a_limit_fails_the_run_with_the_reason(
    hostile: HostileSite, kind: str, message: str
) -> None:
    with pytest.raises(WorkflowFailed) as caught:
        await run(hostile_spec(), hostile.url(kind), "quick")
    assert caught.value.message == f"could not analyse {hostile.url(kind)}: {message}"


async def test_cancellation_during_analysis_kills_the_page_worker(hostile: HostileSite) -> None:
    config = settings(max_page_bytes=HOSTILE_PAGE_BYTES, analysis_cpu_seconds=60.0)
    pool = pages(config)
    workflow = build_autointel(config, resolver=fake_resolver, pages=pool)
    analysing = asyncio.Event()

    def report(*, stage: str, progress: float, detail: str = "") -> None:
        if stage == "analysing":
            analysing.set()

    await workflow.run({"url": hostile.url(), "depth": "quick"}, Recorder())  # a worker is up
    task = asyncio.create_task(
        workflow.run({"url": hostile.url("attributes"), "depth": "quick"}, report)
    )
    async with asyncio.timeout(HANG_GUARD_S):
        await analysing.wait()
        await wait_until(lambda: pool.busy_pids, what="the page in a worker")
        (pid,) = pool.busy_pids
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await wait_until(gone, what=f"page worker {pid} killed")
    assert pool.pids == []


# ---------------------------------------------------------------------------------------------
# Cancellation


async def test_cancellation_during_a_fetch_propagates(site: Site) -> None:
    task = asyncio.create_task(spec().run({"url": site.url("/slow"), "depth": "quick"}, Recorder()))
    async with asyncio.timeout(HANG_GUARD_S):
        await site.slow_entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()


async def test_cancellation_during_page_delay_propagates(site: Site) -> None:
    analysed = asyncio.Event()

    def report(*, stage: str, progress: float, detail: str = "") -> None:
        if stage == "analysing":
            analysed.set()

    workflow = spec(page_delay=3600.0)
    task = asyncio.create_task(workflow.run({"url": site.url("/"), "depth": "standard"}, report))
    async with asyncio.timeout(HANG_GUARD_S):
        await analysed.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert site.hits == ["/"]


async def test_cancellation_during_a_sub_page_propagates(site: Site) -> None:
    task = asyncio.create_task(
        spec().run({"url": site.url("/slow-link"), "depth": "standard"}, Recorder())
    )
    async with asyncio.timeout(HANG_GUARD_S):
        await site.slow_entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------------------------------------
# The guard inside a run: loopback is reachable only through an exemption for the site's port


def guarded_spec(site: Site) -> WorkflowSpec:
    guard = NetGuard(
        allow_private=False,
        resolver=fake_resolver,
        exempt_endpoints=[("127.0.0.1", site.port)],
    )
    config = settings(allow_private_networks=False)
    return build_autointel(config, guard=guard, pages=pages(config))


async def test_exempt_endpoint_is_reachable_with_the_policy_on(site: Site) -> None:
    result, _ = await run(guarded_spec(site), site.url("/"), "quick")
    assert result["title"] == "Widget Workshop"


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/redirect/private", "10.0.0.1"),
        ("/redirect/metadata", "169.254.169.254"),
        ("/redirect/intranet", "10.0.0.5"),
        ("/redirect/decimal", "127.0.0.1"),
    ],
)
async def test_redirect_to_a_private_address_is_refused_before_connecting(
    site: Site, path: str, named: str
) -> None:
    workflow = guarded_spec(site)
    options = await workflow.validate({"url": site.url(path), "depth": "quick"})
    with pytest.raises(WorkflowFailed) as caught:
        await workflow.run(options, Recorder())
    assert named in caught.value.message
    assert "only public internet addresses" in caught.value.message
    assert site.hits == [path]  # the hop was judged, never requested


async def test_redirect_to_another_loopback_port_is_refused(site: Site) -> None:
    workflow = guarded_spec(site)
    with pytest.raises(WorkflowFailed, match="loopback"):
        await workflow.run({"url": site.url("/redirect/other-port"), "depth": "quick"}, Recorder())
    assert site.hits == ["/redirect/other-port"]


async def test_loopback_site_is_refused_without_allow_private(site: Site) -> None:
    workflow = build_autointel(settings(allow_private_networks=False), resolver=fake_resolver)
    with pytest.raises(InvalidWorkflowOptions) as caught:
        await workflow.validate({"url": site.url("/"), "depth": "quick"})
    assert caught.value.field == "url"
    assert "127.0.0.1" in caught.value.message and "loopback" in caught.value.message
    # Even skipping validation, the run refuses before any request.
    with pytest.raises(WorkflowFailed, match="loopback"):
        await workflow.run({"url": site.url("/"), "depth": "quick"}, Recorder())
    with pytest.raises(WorkflowFailed, match="loopback"):
        await workflow.run({"url": f"http://localhost:{site.port}/", "depth": "quick"}, Recorder())
    assert site.hits == []


async def test_dns_rebinding_is_caught_at_connect_time(site: Site) -> None:
    # The name looks public when the URL is checked and private when the connector resolves
    # it: the connector's resolver must refuse, so no connection is ever attempted.
    calls: list[str] = []

    async def rebinding(host: str) -> list[str]:
        calls.append(host)
        return ["93.184.215.14"] if len(calls) == 1 else ["10.0.0.7"]

    guard = NetGuard(allow_private=False, resolver=rebinding)
    workflow = build_autointel(settings(allow_private_networks=False), guard=guard)
    with pytest.raises(WorkflowFailed) as caught:
        await workflow.run({"url": "http://rebind.test/", "depth": "quick"}, Recorder())
    assert "10.0.0.7" in caught.value.message
    assert calls == ["rebind.test", "rebind.test"]
