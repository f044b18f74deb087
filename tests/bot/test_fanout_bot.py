"""Issue #5 with the running bot: the notifier fanout wired into NotifierBot, against the emulator.

Notices reach a DM, a Discord incoming webhook (through Apprise's own Discord plugin and natively)
and local JSON sinks; a result that no Discord rung can deliver is persisted and the fanout says how
to retrieve it; the timeout warning fires only above its threshold; and no configured secret shows
up in the log or in any Discord message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest
from loguru import logger

from notifier.app import NotifierBot
from notifier.fanout.outbox import OutboxStatus
from notifier.records import DeliveryState, WorkflowStatus
from notifier.testing import (
    DiscordEmulator,
    HttpSink,
    every_message,
    message_texts,
    text_of,
)
from notifier.testing.model import Message
from notifier.testing.project_bot import outbox_rows, project_bot, settled_rows

from .support import run_steered

TTL = pytest.mark.discord_emulator(interaction_ttl_s=4.0)
SINK_PASSWORD = "s3cretpass"
WEBHOOK_ROUTE = "/webhooks/{webhook_id}/{webhook_token}"


# ---------------------------------------------------------------------------------------------
# A local JSON sink (what Apprise's json:// posts to)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as running:
        yield running


class _ToLoguru(logging.Handler):
    """Third-party stdlib logging (nextcord, aiohttp, Apprise) into loguru, as `setup_logging`
    does in production, so the captured log holds those lines too."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, record.getMessage())


@pytest.fixture
def stdlib_logs_in_loguru() -> Iterator[None]:
    handler = _ToLoguru(level=logging.INFO)
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


# ---------------------------------------------------------------------------------------------
# Helpers


def assert_no_secrets(emulator: DiscordEmulator, logs: list[str], secrets: Iterable[str]) -> None:
    """No secret in any captured log line, nor in any version of any Discord message."""
    secrets = [s for s in secrets if s]
    assert emulator.bot_token in secrets
    leaked_logs = [(s, line) for line in logs for s in secrets if s in line]
    assert leaked_logs == [], f"secrets in the log: {leaked_logs[:3]}"
    leaked_messages = [
        (s, message.id)
        for message in every_message(emulator)
        for text in message_texts(message)
        for s in secrets
        if s in text
    ]
    assert leaked_messages == [], f"secrets in Discord messages: {leaked_messages[:3]}"


def shown_text(message: Message) -> str:
    """Content, embed titles and descriptions as Discord shows them (markdown escapes removed:
    Apprise's markdown mode sends `controlled\\.`, which Discord renders as `controlled.`)."""
    parts = [message.content]
    for embed in message.embeds:
        parts += [str(embed.get("title", "")), str(embed.get("description", ""))]
    return re.sub(r"\\(.)", r"\1", "\n".join(parts))


def no_tracebacks(logs: list[str]) -> list[str]:
    return [line for line in logs if "Traceback" in line]


# ---------------------------------------------------------------------------------------------
# DM


@pytest.mark.notifier_config(
    {
        "notifiers": [
            {"name": "ops", "plugin": "dm", "on": ["completed"], "options": {"to_requester": True}}
        ]
    }
)
async def test_a_dm_notice_reaches_the_requester_when_the_workflow_completes(
    emulator: DiscordEmulator, bot: NotifierBot, captured_logs: list[str]
) -> None:
    record = await run_steered(emulator, bot, user="alice")
    assert record.status is WorkflowStatus.COMPLETED
    assert record.delivered_via == "interaction"  # the result itself did not need a DM

    dm = await emulator.wait_for_dm(
        "alice", lambda m: record.workflow_id in text_of(m), timeout_s=15
    )
    assert dm.author.id == emulator.bot_user.id
    assert dm.webhook_id is None
    assert "Completed: autointel" in dm.content
    assert "A result the test controlled." in text_of(dm)  # the summary, in the embed

    (row,) = await settled_rows(bot, "ops", 1)
    assert row.status is OutboxStatus.SENT
    assert row.attempts == 1
    # Exactly one DM for the one notice, and nobody else was DMed.
    assert [m.id for m in emulator.dm_messages("alice")] == [dm.id]
    assert emulator.dm_messages("bob") == []
    assert_no_secrets(emulator, captured_logs, [emulator.bot_token])
    assert no_tracebacks(captured_logs) == []


# ---------------------------------------------------------------------------------------------
# Discord incoming webhook, through Apprise and natively


@pytest.mark.parametrize("via", ["apprise", "native"])
async def test_a_discord_webhook_notice_reaches_the_emulators_incoming_webhook(
    emulator: DiscordEmulator, tmp_path: Path, captured_logs: list[str], via: str
) -> None:
    feed = emulator.add_channel("ops-feed")
    hook_id, hook_token = emulator.create_incoming_webhook(feed.id)
    overrides = {
        "notifiers": [
            {
                "name": "ops-channel",
                "plugin": "discord_webhook",
                "on": ["completed"],
                "options": {"url": f"discord://{hook_id}/{hook_token}", "via": via},
            }
        ]
    }
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        record = await run_steered(emulator, bot)
        posted = await emulator.wait_for_channel_message(
            feed.id, lambda m: m.webhook_id == hook_id, timeout_s=20
        )
        (row,) = await settled_rows(bot, "ops-channel", 1)

    text = shown_text(posted)
    assert "Completed: autointel" in text
    assert "A result the test controlled." in text
    assert [m.id for m in emulator.webhook_messages(hook_id)] == [posted.id]
    # Sent at the first try: the only place it was posted is the emulator's API base (a try at
    # discord.com could not have succeeded here, and would have shown as a failed attempt).
    assert row.status is OutboxStatus.SENT
    assert row.attempts == 1
    assert [t.get("attempts") for t in row.targets.values()] == [1]
    assert all(not t.get("errors") for t in row.targets.values()), row.targets
    calls = [
        r
        for r in emulator.requests_to("POST", WEBHOOK_ROUTE)
        if r.path.endswith(f"/webhooks/{hook_id}/{hook_token}")
    ]
    assert len(calls) == 1
    assert calls[0].status in (200, 204)  # Apprise does not ask for ?wait=true: 204
    body = calls[0].json
    if via == "apprise":
        # Apprise's NotifyDiscord payload (`tts`/`wait` in the body, markdown mode → embeds).
        assert body.get("tts") is False
        assert body.get("wait") is True
        assert posted.embeds
    else:
        assert body.get("allowed_mentions") == {"parse": []}
        assert calls[0].query.get("wait") == "true"
        assert posted.embeds[0]["footer"]["text"] == f"workflow {record.workflow_id}"
    assert_no_secrets(emulator, captured_logs, [emulator.bot_token, hook_token])
    assert no_tracebacks(captured_logs) == []


# ---------------------------------------------------------------------------------------------
# Every Discord rung fails: the result is persisted and the fanout says how to retrieve it


@TTL
async def test_an_undeliverable_result_is_persisted_and_the_fanout_gives_the_retrieval_command(
    emulator: DiscordEmulator, tmp_path: Path, sink: HttpSink, captured_logs: list[str]
) -> None:
    emulator.forbid_channel(emulator.channel_id)  # 403/50013
    emulator.close_dms("alice")  # 403/50007
    overrides = {
        "notifiers": [
            {
                "name": "saved",
                "plugin": "apprise",
                "on": ["persisted"],
                "options": {"urls": [sink.json_url("/persisted")]},
            }
        ]
    }
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        # The workflow outlasts the token: the bot hands off while it lives, then it dies.
        record = await run_steered(emulator, bot, outlast_token=True)
        assert record.status is WorkflowStatus.COMPLETED
        assert record.delivery_state is DeliveryState.UNDELIVERABLE
        document = await bot.store.read_result(record.workflow_id)
        assert document["result"]["title"] == "Steered result"

        (row,) = await settled_rows(bot, "saved", 1)
        assert row.status is OutboxStatus.SENT
        assert row.notice.workflow_id == record.workflow_id

    retrieval = f"/retrieve_results workflow_id:{record.workflow_id}"
    (notice,) = sink.bodies()
    assert retrieval in notice["message"]
    assert notice["title"] == "Result saved: autointel"
    # The ladder really met both refusals, and no Discord message carries the result.
    codes = {r.error_code for r in emulator.requests}
    assert {50013, 50007} <= codes
    assert not [m for m in every_message(emulator) if "Steered result" in text_of(m)]
    assert_no_secrets(emulator, captured_logs, [emulator.bot_token])
    assert no_tracebacks(captured_logs) == []


# ---------------------------------------------------------------------------------------------
# The timeout-warning plugin


async def test_the_timeout_warning_fires_only_for_an_estimate_above_its_threshold(
    emulator: DiscordEmulator, tmp_path: Path, sink: HttpSink, captured_logs: list[str]
) -> None:
    overrides = {
        "warnings": {"default_estimates": {"autointel": {"deep": 900.0, "quick": 30.0}}},
        "notifiers": [
            {
                "name": "long-run",
                "plugin": "timeout_warning",
                "on": ["started"],
                "options": {"threshold_s": 600, "urls": [sink.json_url("/warn")]},
            }
        ],
    }
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        quick = await run_steered(emulator, bot, options={"depth": "quick"})
        deep = await run_steered(emulator, bot, options={"depth": "deep"})
        rows = await settled_rows(bot, "long-run", 2)

    by_workflow = {r.workflow_id: r for r in rows}
    assert set(by_workflow) == {quick.workflow_id, deep.workflow_id}
    assert by_workflow[quick.workflow_id].status is OutboxStatus.SKIPPED
    assert "threshold" in (by_workflow[quick.workflow_id].last_error or "")
    assert by_workflow[deep.workflow_id].status is OutboxStatus.SENT
    assert by_workflow[deep.workflow_id].notice.estimate_s == 900.0
    assert by_workflow[quick.workflow_id].notice.estimate_s == 30.0

    (warning,) = sink.bodies()
    assert deep.workflow_id in warning["message"]
    assert not [r for r in sink.received if quick.workflow_id.encode() in r.raw]
    assert "15m 00s" in warning["message"]  # the estimate
    assert f"/retrieve_results workflow_id:{deep.workflow_id}" in warning["message"]
    assert_no_secrets(emulator, captured_logs, [emulator.bot_token])
    assert no_tracebacks(captured_logs) == []


# ---------------------------------------------------------------------------------------------
# Secrets: the bot token, a webhook token and a password in a json:// URL, on a run with failures


async def test_no_configured_secret_reaches_the_log_or_a_discord_message(
    emulator: DiscordEmulator,
    tmp_path: Path,
    sink: HttpSink,
    captured_logs: list[str],
    stdlib_logs_in_loguru: None,
) -> None:
    hook_id, hook_token = emulator.create_incoming_webhook(emulator.channel_id)
    sink.statuses.extend([500])  # the first post fails: its error is logged and stored
    # The first webhook post fails too.
    emulator.inject_fault("POST", f"/webhooks/{hook_id}/*", "status", count=1, status=500)
    overrides = {
        "fanout": {"max_attempts": 4},
        "notifiers": [
            {
                "name": "ops-json",
                "plugin": "apprise",
                "on": ["started", "completed"],
                "options": {"urls": [sink.json_url("/x", userinfo=f"user:{SINK_PASSWORD}")]},
            },
            {
                "name": "ops-hook-native",
                "plugin": "discord_webhook",
                "on": ["completed"],
                "options": {"url": f"discord://{hook_id}/{hook_token}", "via": "native"},
            },
            {
                "name": "ops-hook-apprise",
                "plugin": "discord_webhook",
                "on": ["completed"],
                "options": {"url": f"discord://{hook_id}/{hook_token}", "via": "apprise"},
            },
            {"name": "ops-dm", "plugin": "dm", "on": ["completed"], "options": {}},
        ],
    }
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        record = await run_steered(emulator, bot)
        for name, count in [
            ("ops-json", 2),
            ("ops-hook-native", 1),
            ("ops-hook-apprise", 1),
            ("ops-dm", 1),
        ]:
            rows = await settled_rows(bot, name, count)
            assert {r.status for r in rows} == {OutboxStatus.SENT}, (name, rows)
        stored = [
            json.dumps([r.last_error, r.targets])
            for name in ("ops-json", "ops-hook-native", "ops-hook-apprise")
            for r in await outbox_rows(bot, name)
        ]

    # The failures happened and were reported (so the check below covers error paths too).
    failures = [line for line in captured_logs if "attempt 1/4 failed" in line]
    assert any("'ops-json'" in line and "HTTP 500" in line for line in failures), failures
    assert any("'ops-hook-" in line and "500" in line for line in failures), failures
    assert [r.status for r in sink.received][:1] == [500]
    assert len(emulator.webhook_messages(hook_id)) == 2
    assert await emulator.wait_for_dm("alice", lambda m: record.workflow_id in text_of(m))
    # The json:// password did reach the sink, as HTTP Basic auth (so it was really configured).
    assert all(r.basic_auth == f"user:{SINK_PASSWORD}" for r in sink.received)

    secrets = [emulator.bot_token, hook_token, SINK_PASSWORD]
    assert_no_secrets(emulator, captured_logs, secrets)
    assert not [e for e in stored for s in secrets if s in e]  # nor in the outbox rows
    assert no_tracebacks(captured_logs) == []
