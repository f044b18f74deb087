"""No configured secret — the bot token, an SMTP password in a mailto:// URL, a Discord webhook
token, a JSON sink's password — in any log line, error message, Discord message or stored file.

One bot runs with all four configured and is driven through the paths that produce the most
text: a completed and a failed workflow, a workflow that crashes (logged with its traceback), every
notifier failing at first (SMTP without AUTH, a 500 from the webhook, a sink whose error body
repeats the credentials), an admin's `/notifier reload` of a broken config holding a new password,
and a gateway drop. Logging is set up as bot.py sets it up (conftest), and afterwards everything
is scanned: every captured log line (loguru and stdlib, tracebacks included), every version of
every Discord message (channels, DMs, webhook posts, interaction responses, attachments), the
emulator's answers, the outbox rows and the raw bytes of every stored file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from loguru import logger

from notifier.discord.delivery import Delivery, DeliveryTarget, Rung
from notifier.discord.io import OutgoingMessage
from notifier.fanout.outbox import OutboxStatus
from notifier.logs import redactor
from notifier.records import WorkflowStatus
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, HttpSink, Received, wait_until
from notifier.testing.logs import CapturedLogs
from notifier.testing.project_bot import (
    SteeredWorkflow,
    new_record,
    project_bot,
    settled_record,
)
from notifier.testing.smtp import serve_smtp

from .conftest import SecretScan
from .support import PROJECT_ROOT

SMTP_PASSWORD = "Smtp-Pa55word-never-logged"
SINK_PASSWORD = "Sink-Pa55word-never-logged"
ROTATED_PASSWORD = "Rotated-Pa55word-never-shown"


async def run_one(emulator: DiscordEmulator, bot: object, steered: SteeredWorkflow) -> str:
    from notifier.app import NotifierBot

    assert isinstance(bot, NotifierBot)
    known = {r.workflow_id for r in await bot.store.search(ResultQuery())}
    steered.install(bot)
    await emulator.trigger_command("autointel", {"url": "http://example.test/"}, user="alice")
    await steered.started.wait()
    steered.release.set()
    record = await new_record(bot, known)
    await settled_record(bot, record.workflow_id)
    return record.workflow_id


def stored_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


async def test_no_configured_secret_is_ever_logged_shown_or_stored(
    emulator: DiscordEmulator,
    tmp_path: Path,
    production_logs: CapturedLogs,
    secrets: SecretScan,
) -> None:
    hook_id, hook_token = emulator.create_incoming_webhook(emulator.channel_id)
    secrets.add(SMTP_PASSWORD, SINK_PASSWORD, ROTATED_PASSWORD, hook_token)
    # The first two webhook posts fail with a 500 (one per webhook notifier, or one retried).
    emulator.inject_fault("POST", f"/webhooks/{hook_id}/*", "status", count=2, status=500)
    data_dir = tmp_path / "data"
    config_path = tmp_path / "config.yaml"
    with serve_smtp() as smtp:  # offers no AUTH: the password in its mailto:// fails to log in
        async with HttpSink() as sink:
            # A hostile sink: its first answer is a 500 whose body repeats the path and the
            # credentials it was sent.
            async def echo_credentials(got: Received) -> None:
                if not sink.received:
                    error = f"cannot accept {got.path} for {got.basic_auth}"
                    sink.statuses.append((500, {"error": error}))

            sink.on_receive = echo_credentials
            events = ["started", "completed", "failed"]
            notifiers = [
                {
                    "name": "mail",
                    "plugin": "email",
                    "on": ["failed"],
                    "options": {"urls": [smtp.url(userinfo=f"bot:{SMTP_PASSWORD}")]},
                },
                {
                    "name": "hook",
                    "plugin": "discord_webhook",
                    "on": events,
                    "options": {"url": f"discord://{hook_id}/{hook_token}"},
                },
                {
                    "name": "hook-apprise",
                    "plugin": "discord_webhook",
                    "on": ["completed"],
                    "options": {"url": f"discord://{hook_id}/{hook_token}", "via": "apprise"},
                },
                {
                    "name": "json",
                    "plugin": "apprise",
                    "on": events,
                    "options": {
                        "urls": [sink.json_url("/notices", userinfo=f"ops:{SINK_PASSWORD}")]
                    },
                },
                {"name": "dm", "plugin": "dm", "on": ["failed"], "options": {}},
            ]
            # carol reloads below: only the bot's operators may.
            operators = {"operator_user_ids": [emulator.users["carol"].id]}
            overrides = {
                "discord": operators,
                "fanout": {"max_attempts": 2, "backoff_initial": 0.1, "backoff_max": 0.2},
                "notifiers": notifiers,
            }
            async with project_bot(emulator, data_dir, overrides, config_path=config_path) as bot:
                completed = await run_one(emulator, bot, SteeredWorkflow())
                failing = SteeredWorkflow()
                failing.fail_with = "the site refused the crawler"
                failed = await run_one(emulator, bot, failing)
                crashing = SteeredWorkflow()
                crashing.crash_with = KeyError("pages")
                crashed = await run_one(emulator, bot, crashing)

                # An admin reloads a config whose new notifier is broken and holds a new password.
                broken = {
                    "discord": {
                        "token": emulator.bot_token,
                        "api_base": emulator.api_base,
                        **operators,
                    },
                    "storage": {"path": str(data_dir)},
                    # strict: the broken notifier makes the reload refuse the whole file
                    "fanout": {"plugin_dirs": [str(PROJECT_ROOT / "plugins")], "strict": True},
                    "notifiers": [
                        *notifiers,
                        {
                            "name": "rotated",
                            "plugin": "email",
                            "on": ["failed"],
                            "options": {
                                "urls": [f"mailtos://bot:{ROTATED_PASSWORD}@smtp.example.com"],
                                "bogus": f"pass={ROTATED_PASSWORD}",
                            },
                        },
                    ],
                }
                config_path.write_text(yaml.safe_dump(broken), encoding="utf-8")
                reload = await emulator.trigger_command(
                    "notifier", {}, subcommand="reload", user="carol"
                )
                refusal = await reload.wait_for_message(
                    lambda m: "rejected" in m.content, timeout_s=15
                )
                assert refusal.ephemeral

                # The gateway drops (abruptly): nextcord logs the reconnect with a traceback.
                await emulator.drop_gateway(abrupt=True)
                await emulator.wait_until_resume_count(1, timeout_s=30)

                async def settled() -> bool:
                    rows = await bot.fanout.outbox.rows(limit=None)
                    return bool(rows) and all(r.status is not OutboxStatus.PENDING for r in rows)

                await wait_until(settled, timeout_s=60)
                rows = await bot.fanout.outbox.rows(limit=None)
                statuses = {
                    (await bot.store.get(w)).status  # type: ignore[union-attr]
                    for w in (completed, failed, crashed)
                }
            # The bot is closed: the store and the outbox are on disk, complete.

    # The paths under test really ran: failures happened and were reported.
    assert statuses == {WorkflowStatus.COMPLETED, WorkflowStatus.FAILED}
    assert {r.notifier for r in rows} == {"mail", "hook", "hook-apprise", "json", "dm"}
    assert any(r.notifier == "mail" and r.status is OutboxStatus.FAILED for r in rows)
    assert any(r.attempts > 1 for r in rows if r.notifier in ("hook", "json"))
    assert sink.received and all(r.basic_auth == f"ops:{SINK_PASSWORD}" for r in sink.received)
    assert sink.received[0].status == 500  # the hostile answer was given
    assert emulator.webhook_messages(hook_id)
    log = production_logs.text()
    assert "crashed" in log and "Traceback" in log and "KeyError" in log
    assert "attempt 1/2 failed" in log
    logger.complete()

    # Every place a secret could end up, besides the logs and Discord (scanned by conftest).
    for row in rows:
        secrets.look_in(f"outbox row {row.id}", json.dumps([row.last_error, row.targets]))
        secrets.look_in(f"outbox row {row.id} notice", repr(row.notice))
    for path, data in stored_bytes(data_dir).items():
        secrets.look_in(path, data.decode("utf-8", "replace"))
    # Sanity: the redactor knew all of them (the scan is what proves it worked).
    assert redactor.redact(f"{SMTP_PASSWORD} {hook_token}") == "*** ***"


async def test_a_logged_traceback_through_the_http_layer_shows_no_token(
    emulator: DiscordEmulator,
    tmp_path: Path,
    production_logs: CapturedLogs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Discord call that fails in an unexpected way (here: a proxy answering garbage that the
    HTTP layer chokes on) is logged with its traceback. The frames it passes through hold the
    request's headers, `Authorization: Bot <token>` among them; the log must not show them."""
    original = aiohttp.ClientSession._request
    broken: list[str] = []

    def choking(self: aiohttp.ClientSession, method: str, url: Any, **kwargs: Any) -> Any:
        if method == "POST" and str(url).endswith("/messages") and not broken:
            broken.append(str(url))
            raise ValueError("the proxy answered something that is not HTTP")
        return original(self, method, url, **kwargs)

    async with project_bot(emulator, tmp_path / "data", {}) as bot:
        monkeypatch.setattr(aiohttp.ClientSession, "_request", choking)
        # A result after a restart: no interaction token, so the bot token posts it.
        delivery = Delivery(
            bot.io,
            DeliveryTarget(
                workflow_id="0" * 32,
                user_id=emulator.users["alice"].id,
                channel_id=emulator.channel_id,
                ephemeral=False,
            ),
            None,
        )
        rung = await delivery.deliver(OutgoingMessage(content="a result"))
    assert broken, "the failure was not provoked"
    assert rung is Rung.DM  # the channel rung failed unexpectedly; the DM carried it
    log = production_logs.text()
    assert "unexpected error from a Discord call" in log
    assert "Traceback" in log and "ValueError" in log
