"""Starting workflows: validation before work, limits, the warning, progress under pressure, metrics."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from notifier.app import NotifierBot
from notifier.records import WorkflowStatus
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, text_of, wait_until
from notifier.testing.project_bot import SteeredWorkflow
from notifier.testing.site import DemoSite


def _metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.mark.notifier_config({"autointel": {"allow_private_networks": False}})
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:9/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://[::ffff:10.0.0.1]/", "10.0.0.1"),
        ("ftp://example.org/", "http"),
        ("not a url", "url"),
    ],
)
async def test_a_refused_url_gets_an_ephemeral_error_before_any_work(
    emulator: DiscordEmulator, bot: NotifierBot, url: str, fragment: str
) -> None:
    handle = await emulator.trigger_command("autointel", {"url": url}, user="alice")
    error = await handle.wait_for_message(lambda m: "❌" in m.content, timeout_s=10)
    assert error.ephemeral
    assert fragment in error.content
    public = [m for m in handle.messages if not m.deleted and not m.ephemeral and not m.loading]
    assert public == []
    assert await bot.store.search(ResultQuery()) == []


@pytest.mark.notifier_config({"runner": {"max_per_user": 1}})
async def test_the_per_user_limit_refuses_a_second_workflow(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    second = await emulator.trigger_command("autointel", {"url": "http://y/"}, user="alice")
    refusal = await second.wait_for_message(lambda m: "❌" in m.content, timeout_s=10)
    assert refusal.ephemeral
    assert "already have 1 workflows running" in refusal.content
    other = await emulator.trigger_command("autointel", {"url": "http://z/"}, user="bob")
    await other.wait_for_message(lambda m: "Workflow id" in text_of(m), timeout_s=10)
    steered.release.set()


@pytest.mark.notifier_config(
    {"warnings": {"threshold": 600, "default_estimates": {"autointel": {"deep": 900}}}}
)
async def test_a_long_estimate_warns_the_caller_privately_at_start(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    handle = await emulator.trigger_command(
        "autointel", {"url": "http://x/", "depth": "deep"}, user="alice"
    )
    warning = await handle.wait_for_message(lambda m: "Long workflow" in text_of(m), timeout_s=10)
    assert warning.ephemeral
    assert "15m 00s" in text_of(warning)  # the interaction limit, in words
    assert "/retrieve_results" in text_of(warning)
    steered.release.set()
    quick = await emulator.trigger_command(
        "autointel", {"url": "http://x/", "depth": "quick"}, user="bob"
    )
    await quick.wait_for_message(lambda m: "Workflow id" in text_of(m), timeout_s=10)
    assert not [m for m in quick.messages if "Long workflow" in text_of(m)]


async def test_the_estimate_learns_from_finished_runs(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    assert await bot.runner.estimate_s("autointel", "quick") == 30.0  # the configured default
    steered = SteeredWorkflow()
    steered.install(bot)
    steered.release.set()
    handle = await emulator.trigger_command(
        "autointel", {"url": "http://x/", "depth": "quick"}, user="alice"
    )
    await handle.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=10)
    await wait_until(lambda: bot.store.durations("autointel", "quick", 5))
    estimate = await bot.runner.estimate_s("autointel", "quick")
    assert estimate is not None
    assert estimate < 30.0


@pytest.mark.notifier_config({"progress": {"min_interval": 2.0}})
async def test_a_hundred_updates_a_second_stay_within_the_rate_limit(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered = SteeredWorkflow()
    steered.reports_per_second = 100
    steered.install(bot)
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    await asyncio.sleep(5.0)
    steered.release.set()
    await handle.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=15)
    original = handle.original
    assert original is not None
    await handle.wait_until(
        lambda h: h.original is not None and "100%" in text_of(h.original), timeout_s=10
    )
    edits = [r for r in emulator.requests if r.method == "PATCH" and "@original" in r.path]
    assert 2 <= len(edits) <= 6  # ~500 reports became a handful of edits
    assert emulator.stats.rate_limited == 0
    assert "finished" in text_of(handle.original)


async def test_metrics_move_for_duration_and_delivery_rung(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    delivered_before = _metric("workflow_delivery_total", {"rung": "interaction"})
    count_before = _metric("workflow_duration_seconds_count", {"command": "autointel"})
    steered = SteeredWorkflow()
    steered.install(bot)
    steered.release.set()
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await handle.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=10)
    await wait_until(
        lambda: _metric("workflow_delivery_total", {"rung": "interaction"}) > delivered_before
    )
    assert _metric("workflow_duration_seconds_count", {"command": "autointel"}) == count_before + 1


async def test_autointel_on_a_real_site_stores_and_delivers_its_analysis(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    async with DemoSite(pages=6) as site:
        handle = await emulator.trigger_command(
            "autointel", {"url": site.url, "depth": "standard"}, user="alice"
        )
        result = await handle.wait_for_message(
            lambda m: "Resilience Handbook" in text_of(m) and "completed" in m.content,
            timeout_s=20,
        )
    assert result is not None
    (record,) = await bot.store.search(ResultQuery())
    assert record.status is WorkflowStatus.COMPLETED
    document = await bot.store.read_result(record.workflow_id)
    assert document["result"]["pages_analysed"] == 5
    assert len(site.hits) == 5
