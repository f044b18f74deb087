"""Issue #3 acceptance for the Discord side: /retrieve_results, /results and /workflow status|cancel.

Everything runs the project's real bot against the loopback emulator. Results are made either by
running a (steered) workflow through the bot, or straight in the bot's store with create + finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from notifier.app import NotifierBot
from notifier.discord.access import NOT_FOUND_TEXT
from notifier.records import WorkflowStatus, new_workflow_id
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, text_of, wait_until
from notifier.testing.handle import InteractionHandle
from notifier.testing.model import Message
from notifier.testing.project_bot import SteeredWorkflow, stored_workflow

DAY_S = 86_400.0

# -- helpers ------------------------------------------------------------------------------------


def retrieved(success: bool) -> float:
    value = REGISTRY.get_sample_value(
        "notifier_orphaned_results_retrieved_total", {"success": "true" if success else "false"}
    )
    return value or 0.0


async def retrieve(
    emulator: DiscordEmulator, workflow_id: str, *, user: str = "alice", **where: Any
) -> tuple[InteractionHandle, Message]:
    handle = await emulator.trigger_command(
        "retrieve_results", {"workflow_id": workflow_id}, user=user, **where
    )
    message = await handle.wait_for_message(timeout_s=5)
    return handle, message


def _button(message: Message, label: str) -> dict[str, Any]:
    for row in message.components:
        for component in row.get("components") or []:
            if component.get("label") == label:
                return dict(component)
    raise LookupError(f"no button {label!r} on message {message.id}")


def button_id(message: Message, label: str) -> str:
    return str(_button(message, label)["custom_id"])


def button_disabled(message: Message, label: str) -> bool:
    return bool(_button(message, label).get("disabled"))


def tracebacks(lines: list[str]) -> list[str]:
    return [line for line in lines if "Traceback" in line or "| ERROR" in line]


_opened: list[str] | None = None
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event == "open" and args and isinstance(args[0], str | bytes):
        _opened.append(os.fsdecode(args[0]))


@contextlib.contextmanager
def files_opened() -> Iterator[list[str]]:
    """Paths this process opened (open(), os.open(), io.open_code()) while the block ran, seen
    through an audit hook (sys.addaudithook: installed once, idle outside the block)."""
    global _opened, _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


@pytest.fixture(autouse=True)
async def settled(bot: NotifierBot) -> None:
    """Wait for the bot's start-up recovery, so rows a test makes are not taken for a dead run's
    (marked interrupted) or delivered again."""
    await asyncio.wait_for(bot.recovered.wait(), 15.0)


# -- /retrieve_results: the three ways a result is drawn -----------------------------------------


async def test_the_owner_retrieves_a_small_result_as_embeds(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    workflow_id = await stored_workflow(bot.store, emulator)
    before = retrieved(True)
    handle, message = await retrieve(emulator, workflow_id)
    assert message.attachments == []
    assert message.embeds and message.embeds[0]["title"].endswith("Stored result")
    assert "Found three pages." in message.embeds[0]["description"]
    assert workflow_id in text_of(message)
    assert not message.ephemeral and not handle.ephemeral
    await wait_until(lambda: retrieved(True) == before + 1)


async def test_a_result_too_big_for_embeds_arrives_as_json_and_markdown_files(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    big = {f"key_{i:02d}": f"{i:02d}" + "x" * 898 for i in range(60)}
    workflow_id = await stored_workflow(bot.store, emulator, result={"title": "Big one", **big})
    _, message = await retrieve(emulator, workflow_id)
    files = {a.filename: a.content for a in message.attachments}
    assert set(files) == {f"{workflow_id}.json", f"{workflow_id}.md"}
    document = json.loads(files[f"{workflow_id}.json"])
    assert document["workflow_id"] == workflow_id
    assert {k: v for k, v in document["result"].items() if k != "title"} == big
    markdown = files[f"{workflow_id}.md"].decode("utf-8")
    assert all(value in markdown for value in big.values())
    assert len(message.embeds) == 1
    assert "attached" in message.embeds[0]["description"]
    assert sum(len(json.dumps(e)) for e in message.embeds) < 4000


@pytest.mark.discord_emulator(attachment_size_limit=16 * 1024)
async def test_a_result_too_big_even_for_files_is_summarised_with_the_export_command(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    summary = "A very long summary. " * 2000  # 42 kB: no embed, no 16 kB file holds it
    workflow_id = await stored_workflow(
        bot.store, emulator, result={"title": "Huge", "summary": summary}
    )
    handle, message = await retrieve(emulator, workflow_id)
    assert handle.record.payload["attachment_size_limit"] == 16 * 1024
    assert message.attachments == []
    assert f"python -m notifier results export {workflow_id}" in text_of(message)
    assert "A very long summary." in message.embeds[0]["description"]


# -- /retrieve_results: ephemerality follows the workflow ----------------------------------------


@pytest.mark.parametrize("private", [False, True])
async def test_the_answer_is_ephemeral_exactly_when_the_workflow_was(
    emulator: DiscordEmulator, bot: NotifierBot, private: bool
) -> None:
    steered = SteeredWorkflow()
    steered.install(bot)
    run = await emulator.trigger_command(
        "autointel", {"url": "http://x/", "private": private}, user="alice"
    )
    await steered.started.wait()
    steered.release.set()
    await run.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=10)
    (record,) = await bot.store.search(ResultQuery())
    assert record.ephemeral is private
    await wait_until(lambda: _finished(bot, record.workflow_id))
    handle, message = await retrieve(emulator, record.workflow_id)
    assert "Steered result" in text_of(message)
    assert message.ephemeral is private
    assert handle.ephemeral is private


async def _finished(bot: NotifierBot, workflow_id: str) -> bool:
    record = await bot.store.get(workflow_id)
    return record is not None and record.status is WorkflowStatus.COMPLETED


# -- /retrieve_results: results that cannot be shown -----------------------------------------------


def _result_file(tmp_path: Path, workflow_id: str) -> Path:
    return tmp_path / "data" / "results" / f"{workflow_id}.json"


async def test_a_running_workflow_is_pointed_to_its_status(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    workflow_id = await stored_workflow(bot.store, emulator, status=WorkflowStatus.RUNNING)
    handle, message = await retrieve(emulator, workflow_id)
    assert message.ephemeral and handle.ephemeral
    assert "still running" in message.content and "/workflow status" in message.content


async def test_an_unreadable_result_is_explained_to_the_caller_alone(
    emulator: DiscordEmulator, bot: NotifierBot, tmp_path: Path
) -> None:
    workflow_id = await stored_workflow(
        bot.store, emulator
    )  # a public workflow: the defer is public
    _result_file(tmp_path, workflow_id).write_text("{not json")
    before = retrieved(False)
    handle, message = await retrieve(emulator, workflow_id)
    assert message.ephemeral
    assert f"python -m notifier results show {workflow_id}" in message.content
    visible = [m for m in handle.messages if not m.deleted]
    assert visible == [message], "nothing about it may stay in the channel"
    await wait_until(lambda: retrieved(False) == before + 1)


async def test_a_lost_result_is_said_to_be_lost(
    emulator: DiscordEmulator, bot: NotifierBot, tmp_path: Path
) -> None:
    workflow_id = await stored_workflow(bot.store, emulator)
    _result_file(tmp_path, workflow_id).unlink()
    await bot.store.reconcile()
    record = await bot.store.get(workflow_id)
    assert record is not None and record.status is WorkflowStatus.LOST
    handle, message = await retrieve(emulator, workflow_id)
    assert message.ephemeral and handle.ephemeral
    assert "lost" in message.content and workflow_id in message.content


async def test_an_upload_discord_refuses_falls_back_to_the_summary(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    big = {f"key_{i:02d}": "y" * 900 for i in range(60)}
    workflow_id = await stored_workflow(bot.store, emulator, result=big)
    emulator.inject_fault("POST", "/webhooks/*", status=413, count=1)
    before = retrieved(True)
    handle, message = await retrieve(emulator, workflow_id)
    assert message.attachments == []
    assert f"python -m notifier results export {workflow_id}" in text_of(message)
    assert not message.ephemeral and not handle.ephemeral
    await wait_until(lambda: retrieved(True) == before + 1)


# -- /retrieve_results: who may see a result ----------------------------------------------------


async def test_someone_elses_id_reads_exactly_like_an_unknown_id(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    alices = await stored_workflow(bot.store, emulator, user="alice")
    before = retrieved(False)
    others, other_message = await retrieve(emulator, alices, user="bob")
    unknowns, unknown_message = await retrieve(emulator, new_workflow_id(), user="bob")
    assert other_message.content == unknown_message.content == NOT_FOUND_TEXT
    assert other_message.embeds == unknown_message.embeds == []
    assert other_message.attachments == unknown_message.attachments == []
    assert other_message.ephemeral and unknown_message.ephemeral
    assert others.response_type == unknowns.response_type
    assert alices not in text_of(other_message)
    await wait_until(lambda: retrieved(False) == before + 2)


async def test_an_admin_of_the_guild_retrieves_a_members_result(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    workflow_id = await stored_workflow(bot.store, emulator, user="alice")
    _, message = await retrieve(emulator, workflow_id, user="carol")
    assert message.embeds and "Found three pages." in text_of(message)


async def test_nobody_but_the_owner_gets_a_result_from_outside_its_guild(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    here = await stored_workflow(bot.store, emulator, user="alice")
    elsewhere = await stored_workflow(
        bot.store, emulator, user="alice", guild_id=emulator.guild_id + 1
    )
    emulator.add_user("dave", in_guild=False)
    # The guild's admin, asking from a DM (no guild, so no admin rights there).
    _, dm = await retrieve(emulator, here, user="carol", dm=True)
    assert dm.content == NOT_FOUND_TEXT
    # The guild's admin, for a result from another guild.
    _, other_guild = await retrieve(emulator, elsewhere, user="carol")
    assert other_guild.content == NOT_FOUND_TEXT
    # A stranger sharing no guild with the bot.
    _, stranger = await retrieve(emulator, here, user="dave", dm=True)
    assert stranger.content == NOT_FOUND_TEXT
    # The owner, from anywhere.
    _, own = await retrieve(emulator, elsewhere, user="alice", dm=True)
    assert "Found three pages." in text_of(own)


# -- /retrieve_results: malformed ids ------------------------------------------------------------

LONGEST_OPTION = 6000  # Discord's limit on a string option; the emulator passes longer ones on


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../etc/passwd",
        "",
        "f" * 10_240,
        "0" * LONGEST_OPTION,
        "*",
        "0123456789abcdef0123456789abcde*",
        "ｆ" * 32,  # full-width hex letters
        "٠١٢٣٤٥٦٧٨٩" * 3 + "ab",  # Arabic-Indic digits
        "🙂",
        "a" * 31 + "\x00",
    ],
    ids=["dotdot", "empty", "10kb", "6000", "star", "glob", "fullwidth", "arabic", "emoji", "nul"],
)
async def test_a_malformed_id_is_refused_clearly_and_reads_no_file(
    emulator: DiscordEmulator,
    bot: NotifierBot,
    captured_logs: list[str],
    tmp_path: Path,
    bad_id: str,
) -> None:
    await stored_workflow(
        bot.store, emulator
    )  # something in the store that a path trick could reach
    before = retrieved(False)
    with files_opened() as opened:
        handle, message = await retrieve(emulator, bad_id)
    assert message.ephemeral and handle.ephemeral
    assert "not a workflow id" in message.content
    assert "32 hexadecimal characters" in message.content
    assert len(message.content) < 300
    assert not [path for path in opened if "passwd" in path or str(tmp_path) in path]
    assert tracebacks(captured_logs) == []
    await wait_until(lambda: retrieved(False) == before + 1)


# -- /retrieve_results: autocomplete -------------------------------------------------------------


async def test_autocomplete_offers_the_callers_recent_ids_only(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    now = time.time()
    alices = [
        await stored_workflow(bot.store, emulator, user="alice", created_at=now - 60 * (3 - i))
        for i in range(3)
    ]
    bobs = await stored_workflow(bot.store, emulator, user="bob", created_at=now)
    choices = await emulator.trigger_autocomplete(
        "retrieve_results", {}, focused="workflow_id", user="alice"
    )
    assert [c["value"] for c in choices] == alices[::-1]  # newest first
    assert all(len(c["name"]) <= 100 for c in choices)
    assert bobs not in json.dumps(choices)
    typed = await emulator.trigger_autocomplete(
        "retrieve_results", {"workflow_id": alices[0][:6]}, focused="workflow_id", user="alice"
    )
    assert alices[0] in [c["value"] for c in typed]
    assert all(c["value"].startswith(alices[0][:6]) for c in typed)
    # bob typing the start of alice's id is offered nothing of hers.
    peeking = await emulator.trigger_autocomplete(
        "retrieve_results", {"workflow_id": alices[0][:6]}, focused="workflow_id", user="bob"
    )
    assert all(c["value"] not in alices for c in peeking)
    junk = await emulator.trigger_autocomplete(
        "retrieve_results", {"workflow_id": "../"}, focused="workflow_id", user="alice"
    )
    assert junk == []


# -- /results ------------------------------------------------------------------------------------


async def results_list(
    emulator: DiscordEmulator, options: dict[str, Any] | None = None, *, user: str = "alice"
) -> Message:
    handle = await emulator.trigger_command("results", options or {}, user=user)
    message = await handle.wait_for_message(timeout_s=5)
    assert message.ephemeral
    return message


def listed_ids(message: Message) -> list[str]:
    """The short ids (8 hex digits) shown on a /results page, top to bottom."""
    description = message.embeds[0]["description"] if message.embeds else ""
    return [line.split("`")[1] for line in description.splitlines() if "`" in line]


def footer(message: Message) -> str:
    return str(message.embeds[0]["footer"]["text"])


async def test_results_lists_the_callers_results_newest_first_with_filters(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    now = time.time()
    old = await stored_workflow(
        bot.store, emulator, url="http://old.example/", created_at=now - 10 * DAY_S
    )
    failed = await stored_workflow(
        bot.store,
        emulator,
        url="http://shop.example/a",
        status=WorkflowStatus.FAILED,
        created_at=now - 2 * DAY_S,
    )
    shop = await stored_workflow(
        bot.store, emulator, url="http://shop.example/b", created_at=now - 60
    )
    await stored_workflow(
        bot.store, emulator, user="bob", url="http://shop.example/bob", created_at=now
    )

    everything = await results_list(emulator)
    assert listed_ids(everything) == [shop[:8], failed[:8], old[:8]]
    assert "3 results" in footer(everything)

    by_url = await results_list(emulator, {"url": "SHOP.example"})
    assert listed_ids(by_url) == [shop[:8], failed[:8]]

    recent = await results_list(emulator, {"since": "7d"})
    assert listed_ids(recent) == [shop[:8], failed[:8]]

    ages_ago = await results_list(emulator, {"since": "9" * 400 + "d"})
    assert listed_ids(ages_ago) == [shop[:8], failed[:8], old[:8]]

    only_failed = await results_list(emulator, {"status": "failed"})
    assert listed_ids(only_failed) == [failed[:8]]

    combined = await results_list(emulator, {"url": "shop", "since": "1d", "status": "completed"})
    assert listed_ids(combined) == [shop[:8]]

    bobs = await results_list(emulator, user="bob")
    assert len(listed_ids(bobs)) == 1 and shop[:8] not in text_of(bobs)


@pytest.mark.parametrize("since", ["yesterday", "7", "-3d", "7 days", "1y"])
async def test_an_invalid_since_gets_a_clear_ephemeral_error(
    emulator: DiscordEmulator, bot: NotifierBot, captured_logs: list[str], since: str
) -> None:
    message = await results_list(emulator, {"since": since})
    assert message.embeds == [] and message.components == []
    assert repr(since) in message.content
    assert "30m, 12h, 7d or 2w" in message.content
    assert tracebacks(captured_logs) == []


async def test_results_pages_with_the_buttons_and_only_for_the_caller(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    now = time.time()
    ids = [await stored_workflow(bot.store, emulator, created_at=now - 600 + i) for i in range(23)]
    newest_first = [i[:8] for i in reversed(ids)]
    message = await results_list(emulator)
    assert listed_ids(message) == newest_first[:10]
    assert footer(message).startswith("Page 1 of 3")
    assert button_disabled(message, "◀ Newer") and not button_disabled(message, "Older ▶")

    older = button_id(message, "Older ▶")
    await (await emulator.click_button(message, older)).wait_for_response()
    page = emulator.message(message.id)
    assert listed_ids(page) == newest_first[10:20]
    assert footer(page).startswith("Page 2 of 3")

    await (await emulator.click_button(page, older)).wait_for_response()
    page = emulator.message(message.id)
    assert listed_ids(page) == newest_first[20:]
    assert footer(page).startswith("Page 3 of 3")
    assert button_disabled(page, "Older ▶") and not button_disabled(page, "◀ Newer")

    newer = button_id(page, "◀ Newer")
    await (await emulator.click_button(page, newer)).wait_for_response()
    page = emulator.message(message.id)
    assert listed_ids(page) == newest_first[10:20]

    # Someone else pressing the buttons is refused and turns no page.
    intruder = await emulator.click_button(page, older, user="bob")
    refusal = await intruder.wait_for_message(timeout_s=5)
    assert refusal.ephemeral and "someone else" in refusal.content
    assert listed_ids(emulator.message(message.id)) == newest_first[10:20]


async def test_two_users_lists_page_independently(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    now = time.time()
    alices = [
        await stored_workflow(bot.store, emulator, created_at=now - 600 + i) for i in range(12)
    ]
    bobs = [
        await stored_workflow(bot.store, emulator, user="bob", created_at=now - 600 + i)
        for i in range(12)
    ]
    alice_list = await results_list(emulator, user="alice")
    bob_list = await results_list(emulator, user="bob")
    press = await emulator.click_button(alice_list, button_id(alice_list, "Older ▶"), user="alice")
    await press.wait_for_response()
    assert listed_ids(emulator.message(alice_list.id)) == [alices[1][:8], alices[0][:8]]
    press = await emulator.click_button(bob_list, button_id(bob_list, "Older ▶"), user="bob")
    await press.wait_for_response()
    assert listed_ids(emulator.message(bob_list.id)) == [bobs[1][:8], bobs[0][:8]]


# -- /workflow status|cancel -----------------------------------------------------------------------


async def _running_steered(
    emulator: DiscordEmulator, bot: NotifierBot
) -> tuple[SteeredWorkflow, str]:
    steered = SteeredWorkflow()
    steered.install(bot)
    await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    (record,) = await bot.store.search(ResultQuery())
    assert steered.report is not None
    steered.report(stage="crawling", progress=0.42)
    return steered, record.workflow_id


async def workflow(
    emulator: DiscordEmulator, action: str, workflow_id: str, *, user: str
) -> Message:
    handle = await emulator.trigger_command(
        "workflow", {"workflow_id": workflow_id}, subcommand=action, user=user
    )
    message = await handle.wait_for_message(timeout_s=5)
    assert message.ephemeral
    return message


async def test_workflow_status_shows_stage_and_progress_to_the_owner_and_an_admin_only(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered, workflow_id = await _running_steered(emulator, bot)
    for user in ("alice", "carol"):
        status = await workflow(emulator, "status", workflow_id, user=user)
        shown = text_of(status)
        assert "crawling" in shown and "42%" in shown and workflow_id in shown
    refused = await workflow(emulator, "status", workflow_id, user="bob")
    unknown = await workflow(emulator, "status", new_workflow_id(), user="bob")
    assert refused.content == unknown.content == NOT_FOUND_TEXT
    assert refused.embeds == unknown.embeds == []
    steered.release.set()


async def test_another_user_cannot_cancel_and_is_told_not_found(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered, workflow_id = await _running_steered(emulator, bot)
    refused = await workflow(emulator, "cancel", workflow_id, user="bob")
    assert refused.content == NOT_FOUND_TEXT
    assert bot.runner.is_running(workflow_id)
    steered.release.set()


@pytest.mark.parametrize("user", ["alice", "carol"])
async def test_the_owner_or_an_admin_cancels_a_running_workflow(
    emulator: DiscordEmulator, bot: NotifierBot, user: str
) -> None:
    _, workflow_id = await _running_steered(emulator, bot)
    answer = await workflow(emulator, "cancel", workflow_id, user=user)
    assert f"Cancelled workflow `{workflow_id}`" in answer.content
    await wait_until(lambda: not bot.runner.is_running(workflow_id))
    record = await bot.store.get(workflow_id)
    assert record is not None and record.status is WorkflowStatus.CANCELLED
    document = await bot.store.read_result(record.workflow_id)
    assert document["workflow"]["status"] == "cancelled"
    again = await workflow(emulator, "cancel", workflow_id, user=user)
    assert "not running" in again.content
