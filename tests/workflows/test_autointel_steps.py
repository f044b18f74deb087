"""autointel records each page as a step: a run resumed from the steps of a run that died fetches
none of the pages recorded, and its result is the result of an uninterrupted run."""

from __future__ import annotations

from collections import Counter
from typing import Any

from notifier.config import AutointelSettings
from notifier.testing.site import DemoSite
from notifier.workflows import Context
from notifier.workflows.autointel import build_autointel
from notifier.workflows.contract import MemoryJournal
from notifier.workflows.pagepool import PagePool

from .conftest import fake_resolver


def _ctx(journal: MemoryJournal) -> Context:
    return Context(
        workflow_id="",
        user_id=1,
        guild_id=None,
        private=False,
        options={},
        report=lambda **_: None,
        journal=journal,
    )


async def test_a_resumed_crawl_refetches_no_recorded_page_and_ends_with_the_same_result() -> None:
    settings = AutointelSettings(allow_private_networks=True, pages={"deep": 8})
    pool = PagePool(workers=1, page_cpu_s=settings.analysis_cpu_seconds)
    spec = build_autointel(settings, resolver=fake_resolver, pages=pool)
    try:
        async with DemoSite(pages=10) as site:
            options = {"url": site.url, "depth": "deep"}
            whole = MemoryJournal()
            expected = await spec.run(options, _ctx(whole))
            assert [name for _, name, _ in whole.recorded] == [f"page:{i}" for i in range(8)]
            fetched_whole = Counter(site.hits)

            # The process died after recording 5 pages: the resumed run replays them.
            site.hits.clear()
            recorded: list[tuple[str, Any]] = [(n, v) for _, n, v in whole.recorded[:5]]
            resumed = MemoryJournal(replayed=recorded)
            result = await spec.run(options, _ctx(resumed))
    finally:
        await pool.close()

    recorded_paths = {
        "/" if v["url"] == site.url else v["url"][len(site.url) - 1 :] for _, v in recorded
    }
    assert not recorded_paths & set(site.hits), site.hits
    assert len(site.hits) == 3  # pages 6 to 8, once each
    assert sum(fetched_whole.values()) == 8
    assert [n for _, n, _ in resumed.recorded] == ["page:5", "page:6", "page:7"]
    assert result == expected
    assert result["pages_analysed"] == 8
