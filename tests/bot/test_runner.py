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


@pytest.mark.notifier_config({"runner": {"max_per_user": 3, "max_concurrent": 20}})
async def test_twelve_simultaneous_commands_from_one_user_start_exactly_the_limit(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    """The limit holds when commands arrive together: each takes its place in the same step as
    the check, before the awaits of validation, the estimate and the store's row."""
    steered = SteeredWorkflow()
    steered.install(bot)

    handles = await asyncio.gather(
        *(
            emulator.trigger_command("autointel", {"url": f"http://x/{i}"}, user="alice")
            for i in range(12)
        )
    )
    answers = [
        await handle.wait_for_message(
            lambda m: "❌" in m.content or "Workflow id" in text_of(m), timeout_s=15
        )
        for handle in handles
    ]

    refused = [a for a in answers if "❌" in a.content]
    started = [a for a in answers if "❌" not in a.content]
    assert len(started) == 3, [text_of(a)[:80] for a in answers]
    assert all("already have 3 workflows running" in a.content and a.ephemeral for a in refused)
    assert len(refused) == 9
    assert bot.runner.running_for(emulator.users["alice"].id) == 3
    steered.release.set()
    await wait_until(lambda: bot.runner.running_for(emulator.users["alice"].id) == 0)
    assert len(await bot.store.search(ResultQuery(status=WorkflowStatus.COMPLETED))) == 3


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
    delivered_before = _metric("notifier_workflow_delivery_total", {"rung": "interaction"})
    count_before = _metric("notifier_workflow_duration_seconds_count", {"command": "autointel"})
    steered = SteeredWorkflow()
    steered.install(bot)
    steered.release.set()
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await handle.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=10)
    await wait_until(
        lambda: (
            _metric("notifier_workflow_delivery_total", {"rung": "interaction"}) > delivered_before
        )
    )
    assert (
        _metric("notifier_workflow_duration_seconds_count", {"command": "autointel"})
        == count_before + 1
    )


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


async def test_cancel_once_the_result_is_stored_says_so_and_the_result_still_arrives(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    # The result's post to the interaction is held 3 s by "Discord": the result is stored and
    # on its way when the cancel comes.
    held = emulator.inject_fault("POST", "/webhooks/*", "hang", count=1, delay_s=3.0)
    steered.release.set()
    await wait_until(lambda: held.remaining == 0, what="the result's post to be held")

    cancel = await emulator.trigger_command(
        "workflow", {"workflow_id": await _only_id(bot)}, subcommand="cancel", user="alice"
    )
    answer = await cancel.wait_for_message(timeout_s=10)

    assert answer.ephemeral
    assert "completed and its result is stored" in answer.content
    assert "/retrieve_results" in answer.content
    await handle.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=15)
    (row,) = await bot.store.search(ResultQuery())
    assert row.status is WorkflowStatus.COMPLETED


async def _only_id(bot: NotifierBot) -> str:
    (row,) = await bot.store.search(ResultQuery())
    return row.workflow_id


async def test_an_outcome_the_store_refuses_is_logged_at_error_with_the_workflow_id(
    emulator: DiscordEmulator, bot: NotifierBot, captured_logs: list[str]
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    workflow_id = await _only_id(bot)
    # Someone else's outcome got stored under this id first (as a second bot on the same
    # storage path would do): the store never overwrites it.
    await bot.store.finish(workflow_id, status=WorkflowStatus.FAILED, result=None, error="other")
    steered.release.set()

    await wait_until(lambda: not bot.runner.is_running(workflow_id))

    errors = [line for line in captured_logs if "| ERROR" in line and workflow_id in line]
    assert any("its outcome was not stored" in line for line in errors), captured_logs[-5:]
