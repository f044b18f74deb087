"""No configured secret (an SMTP password in a mailto URL, a webhook token, a JSON password)
reaches a log line or the outbox file, even when every send fails and errors echo requests."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from notifier.events import Event
from notifier.fanout.outbox import OutboxStatus
from notifier.fanout.transports.common import mask_url
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, Received, free_port
from notifier.testing.smtp import SmtpServer

from .support import (
    WEBHOOK_ID,
    WEBHOOK_TOKEN,
    make_notice,
    make_settings,
    open_fanout,
    settled,
    with_api_base,
)

SMTP_PASSWORD = "SmtpPassw0rd-do-not-log"
JSON_PASSWORD = "JsonPassw0rd-do-not-log"


def outbox_bytes(folder: Path) -> bytes:
    """The raw outbox database and its WAL: what an attacker reading the disk would see."""
    return b"".join(p.read_bytes() for p in folder.glob("outbox.sqlite3*"))


async def test_secrets_never_reach_logs_or_the_outbox(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    smtp_server: SmtpServer,
    log_lines: list[str],
) -> None:
    discord = await sinks()

    async def echo_the_request(request: Received) -> None:
        # A hostile sink: its error body repeats the full URL, token included.
        discord.statuses.append((500, {"message": f"cannot handle {request.path}"}))

    discord.on_receive = echo_the_request
    refused = free_port()
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "mail",
                "plugin": "email",
                "on": ["failed"],
                # aiosmtpd offers no AUTH on plain SMTP: the login fails, every time.
                "options": {"urls": [smtp_server.url(userinfo=f"bot:{SMTP_PASSWORD}")]},
            },
            {
                "name": "hook-native",
                "plugin": "discord_webhook",
                "on": ["failed"],
                "options": {"url": f"discord://{WEBHOOK_ID}/{WEBHOOK_TOKEN}"},
            },
            {
                "name": "hook-apprise",
                "plugin": "discord_webhook",
                "on": ["failed"],
                "options": {"url": f"discord://{WEBHOOK_ID}/{WEBHOOK_TOKEN}", "via": "apprise"},
            },
            {
                "name": "json",
                "plugin": "apprise",
                "on": ["failed"],
                "options": {"urls": [f"json://bot:{JSON_PASSWORD}@127.0.0.1:{refused}/x"]},
            },
        ],
        max_attempts=2,
    )
    async with open_fanout(settings, with_api_base(context, discord)) as fanout:
        await fanout.emit(make_notice(Event.FAILED, error="boom"))
        rows = await settled(fanout, 4)

    assert {r.status for r in rows} == {OutboxStatus.FAILED}
    assert all(r.last_error for r in rows)
    assert any("HTTP 500" in (r.last_error or "") for r in rows)  # the echo was stored, masked
    secrets = [SMTP_PASSWORD, JSON_PASSWORD, WEBHOOK_TOKEN]
    logged = "\n".join(log_lines)
    assert "failed" in logged  # failures were logged ...
    for secret in secrets:
        assert secret not in logged  # ... without a secret
    stored = outbox_bytes(tmp_path)
    assert stored  # the database and its WAL
    for secret in secrets:
        assert secret.encode() not in stored
    for row in rows:
        for target in row.targets.values():
            for secret in secrets:
                assert secret not in str(target)


async def test_secrets_inside_an_apprise_config_file_are_redacted_too(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    log_lines: list[str],
) -> None:
    """config.yaml never saw these secrets: the plugin hands them to the redactor at load."""
    password = "FilePassw0rd-only-in-apprise-yml"
    sink = await sinks()

    async def echo_credentials(request: Received) -> None:
        # A hostile sink: its error body repeats the decoded Basic credentials.
        decoded = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
        sink.statuses.append((500, {"message": f"who is {decoded}?"}))

    sink.on_receive = echo_credentials
    config = tmp_path / "apprise.yml"
    config.write_text(f"urls:\n  - json://bot:{password}@127.0.0.1:{sink.port}/x\n")
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "from-file",
                "plugin": "apprise",
                "on": ["failed"],
                "options": {"config": str(config)},
            }
        ],
        max_attempts=2,
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.FAILED))
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.FAILED
    assert row.last_error is not None
    assert "who is bot:***?" in row.last_error  # the echo was kept, the secret masked
    assert password not in "\n".join(log_lines)
    assert password.encode() not in outbox_bytes(tmp_path)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mailtos://bot:pa55word@smtp.example.com?to=a@b.c", "mailtos://bot@smtp.example.com/***"),
        ("discord://1234567890/tok3n", "discord://***/***"),
        ("json://127.0.0.1:8080/hook?token=abc", "json://127.0.0.1:8080/***"),
        ("json://127.0.0.1:8080", "json://127.0.0.1:8080"),
        ("not a url", "***"),
    ],
)
def test_mask_url_keeps_scheme_user_and_host_only(url: str, shown: str) -> None:
    assert mask_url(url) == shown
