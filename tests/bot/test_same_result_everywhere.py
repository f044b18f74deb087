"""One result, five views: they all render the stored document, so they all agree.

A workflow's result may hold what JSON cannot: NaN and infinities (stored as null), a set and a
tuple (stored as lists), a lone surrogate (stored escaped, shown as "?"), an integer beyond 64 bits
(stored exactly). The first delivery, the delivery after a hand-off, `/retrieve_results`,
`python -m notifier results export` and the fanout's `{summary}` must show the same values, the
ones the store keeps, whichever way the result reaches someone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.app import NotifierBot
from notifier.discord.embeds import render_result
from notifier.records import StoredResult, WorkflowRecord, WorkflowStatus
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, HttpSink, text_of, wait_until
from notifier.testing.model import Message
from notifier.testing.processes import run_cli
from notifier.testing.project_bot import SteeredWorkflow, project_bot

TITLE = "Same everywhere"
RESULT: dict[str, Any] = {
    "title": TITLE,
    "nan": float("nan"),
    "inf": float("inf"),
    "set": {1, 2, 3},
    "tuple": (4, 5),
    "surrogate": "a\udc80b",
    "big": 2**70,
}
# As the store keeps it, and so as every view shows it.
STORED_RESULT: dict[str, Any] = {
    "title": TITLE,
    "nan": None,
    "inf": None,
    "set": [1, 2, 3],
    "tuple": [4, 5],
    "surrogate": "a\udc80b",
    "big": 1180591620717411303424,
}
SHOWN_FIELDS = {
    "Nan": "—",
    "Inf": "—",
    "Set": "1, 2, 3",
    "Tuple": "4, 5",
    "Surrogate": "a?b",
    "Big": "1180591620717411303424",
}
# The fanout's {summary} of a result without a "summary" text: what its stored values are.
STORED_SUMMARY = "2 str, 2 NoneType, 2 list, 1 int"


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as running:
        yield running


@pytest.fixture
async def bot(
    emulator: DiscordEmulator, tmp_path: Path, sink: HttpSink
) -> AsyncIterator[NotifierBot]:
    """The real bot, telling a JSON sink the `{summary}` of every completed workflow."""
    overrides = {
        "notifiers": [
            {
                "name": "summaries",
                "plugin": "apprise",
                "on": ["completed"],
                "templates": {"completed": {"title": "done", "body": "{summary}"}},
                "options": {"urls": [sink.json_url()]},
            }
        ]
    }
    async with project_bot(emulator, tmp_path / "data", overrides) as running:
        yield running


def _fields(message: Message) -> dict[str, str]:
    (embed,) = message.embeds
    return {field["name"]: field["value"] for field in embed.get("fields") or []}


async def _record_of(bot: NotifierBot, message: Message) -> WorkflowRecord:
    (row,) = [
        r
        for r in await bot.store.search(ResultQuery())
        if r.workflow_id in message.embeds[0]["footer"]["text"]
    ]
    return row


async def _export(config: Path, workflow_id: str) -> Any:
    """`python -m notifier results export ID`, run as an operator runs it."""
    exported = await run_cli(config, "results", "export", workflow_id)
    assert exported.returncode == 0, exported.stderr
    return json.loads(exported.stdout)


@pytest.mark.discord_emulator(interaction_ttl_s=4.0)
async def test_a_result_looks_the_same_in_every_view(
    emulator: DiscordEmulator,
    bot: NotifierBot,
    sink: HttpSink,
    tmp_path: Path,
) -> None:
    # 1. The first delivery: the workflow ends while its interaction token lives.
    first_run = SteeredWorkflow()
    first_run.result = RESULT
    first_run.install(bot)
    first = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await first_run.started.wait()
    first_run.release.set()
    delivered = await first.wait_for_message(lambda m: TITLE in text_of(m), timeout_s=10)

    # 2. The hand-off result: the next one outlives its token and ends in the channel.
    second_run = SteeredWorkflow()
    second_run.result = RESULT
    second_run.install(bot)
    second = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await second_run.started.wait()
    await second.wait_for_message(lambda m: "Still working" in m.content, timeout_s=10)
    second.expire()  # nothing may use the token after the hand-off; the emulator now refuses it
    second_run.release.set()
    handed_off = await emulator.wait_for_channel_message(
        predicate=lambda m: TITLE in text_of(m) and m.interaction_id is None, timeout_s=10
    )

    # 3. /retrieve_results for the first one.
    record = await _record_of(bot, delivered)
    retrieval = await emulator.trigger_command(
        "retrieve_results", {"workflow_id": record.workflow_id}, user="alice"
    )
    retrieved = await retrieval.wait_for_message(timeout_s=10)

    # 4. The operator's export of the first one, beside the running bot.
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"storage": {"path": str(bot.settings.storage.path)}}))
    exported = await _export(config, record.workflow_id)

    # 5. What the fanout told operators, twice.
    await wait_until(lambda: len(sink.bodies()) == 2, timeout_s=15)

    for message in (delivered, handed_off, retrieved):
        assert _fields(message) == SHOWN_FIELDS
        assert message.embeds[0]["title"] == f"✅ {TITLE}"
    assert delivered.embeds == retrieved.embeds  # one workflow: the same message, word for word
    assert exported["result"] == STORED_RESULT
    assert render_result(StoredResult(record, exported)).embeds == delivered.embeds
    assert [body["message"] for body in sink.bodies()] == [STORED_SUMMARY, STORED_SUMMARY]


async def test_a_result_json_cannot_hold_at_all_ends_as_a_failure_its_user_hears_of(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    """A circular reference cannot be stored, so it cannot be shown: the workflow is stored as
    failed with the cause, and its user is told, instead of waiting on "thinking" forever."""
    circular: dict[str, Any] = {"title": TITLE}
    circular["itself"] = circular
    run = SteeredWorkflow()
    run.result = circular
    run.install(bot)
    handle = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await run.started.wait()
    run.release.set()

    told = await handle.wait_for_message(lambda m: "failed" in text_of(m), timeout_s=10)

    assert "cannot be encoded as JSON" in text_of(told)
    (row,) = await bot.store.search(ResultQuery())
    assert row.status is WorkflowStatus.FAILED
    assert row.error.startswith("internal error (the result cannot be encoded as JSON")
    document = await bot.store.read_result(row.workflow_id)
    assert document["result"]["error"] == row.error
