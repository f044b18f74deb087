"""The autointel workflow against a real aiohttp site on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from notifier.config import AutointelSettings
from notifier.workflows import InvalidWorkflowOptions, WorkflowFailed, WorkflowSpec
from notifier.workflows.autointel import MAX_REDIRECTS, STAGES, build_autointel
from notifier.workflows.netguard import NetGuard

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


def spec(**overrides: Any) -> WorkflowSpec:
    return build_autointel(settings(**overrides), resolver=fake_resolver)


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
    return build_autointel(settings(allow_private_networks=False), guard=guard)


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
