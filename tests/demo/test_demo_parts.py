"""The demo's own parts, quickly: its SMTP sink (with smtplib and with the `email` plugin through
Apprise) and its settings (the config file it writes for the CLI loads back to the same settings)."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest

from notifier.config import Settings, load_config
from notifier.demo.plan import DemoPlan
from notifier.demo.run import _write_config, demo_settings
from notifier.demo.smtp import SmtpSink
from notifier.events import Event, Notice
from notifier.fanout.dispatch import Fanout
from notifier.plugins import PluginContext
from notifier.testing import DiscordEmulator


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as running:
        yield running


def _send(port: int, message: EmailMessage, to: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message, from_addr="a@example.com", to_addrs=to)


async def test_smtplib_delivers_into_the_sink_with_dots_unstuffed(sink: SmtpSink) -> None:
    message = EmailMessage()
    message["Subject"] = "Hello from smtplib"
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message.set_content("first line\n.a line that starts with a dot\n.\nlast line\n")
    await asyncio.to_thread(_send, sink.port, message, ["b@example.com", "c@example.com"])
    (mail,) = await asyncio.wait_for(sink.wait_for(1), 10)
    assert mail.subject == "Hello from smtplib"
    assert mail.mail_from == "a@example.com"
    assert mail.rcpt_tos == ("b@example.com", "c@example.com")
    assert mail.text() == "first line\n.a line that starts with a dot\n.\nlast line\n"


async def test_the_sink_refuses_what_it_does_not_speak(sink: SmtpSink) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sink.port)
    try:
        assert (await reader.readline()).startswith(b"220 ")
        for command, answer in [
            (b"DATA", b"503 "),
            (b"RCPT TO:<b@example.com>", b"503 "),
            (b"STARTTLS", b"502 "),
            (b"HELO me", b"250 "),
            (b"QUIT", b"221 "),
        ]:
            writer.write(command + b"\r\n")
            await writer.drain()
            assert (await reader.readline()).startswith(answer), command
    finally:
        writer.close()
    assert sink.messages == []


async def test_the_email_plugin_sends_through_apprise_into_the_sink(
    sink: SmtpSink, tmp_path: Path
) -> None:
    settings = Settings.model_validate(
        {
            "storage": {"path": str(tmp_path / "data")},
            "notifiers": [
                {
                    "name": "ops-email",
                    "plugin": "email",
                    "on": ["completed"],
                    "options": {
                        "urls": [sink.mailto_url(sender="n@example.com", to="o@example.com")]
                    },
                    "templates": {"completed": {"title": "{command} done", "body": "{summary}"}},
                }
            ],
        }
    )
    executor = ThreadPoolExecutor(max_workers=2)
    async with aiohttp.ClientSession() as http:
        fanout = await Fanout.open(settings, PluginContext(http=http, executor=executor))
        try:
            await fanout.emit(
                Notice(Event.COMPLETED, "0" * 32, 1, "alice", "autointel", summary="all fine")
            )
            (mail,) = await asyncio.wait_for(sink.wait_for(1), 30)
        finally:
            await fanout.close()
            executor.shutdown(wait=False)
    assert mail.subject == "autointel done"
    assert mail.rcpt_tos == ("o@example.com",)
    assert "all fine" in mail.text()


async def test_the_config_the_demo_writes_loads_back_to_its_settings(
    emulator: DiscordEmulator, tmp_path: Path, sink: SmtpSink
) -> None:
    plan = DemoPlan()
    settings = demo_settings(
        Settings(),
        emulator=emulator,
        plan=plan,
        data_dir=tmp_path / "data",
        smtp=sink,
        webhook=emulator.create_incoming_webhook(),
        metrics_port=9,
    )
    assert settings.discord.interaction_ttl == plan.ttl_s
    assert settings.discord.handoff_before + settings.discord.safety_margin < plan.ttl_s
    assert [n.name for n in settings.notifiers] == ["ops-email", "ops-webhook", "long-run-warning"]
    path = tmp_path / "config.yaml"
    _write_config(settings, path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_config(path, env={}) == settings


def test_the_demo_plan_keeps_the_story_in_order() -> None:
    for ttl in (5.0, 20.0, 900.0):
        plan = DemoPlan(ttl)
        site_s = plan.site_delay_s * 15
        assert plan.ttl_s - plan.handoff_before_s - plan.safety_margin_s > 0  # hand-off first
        assert site_s > plan.ttl_s  # the analysis outlives the token
    with pytest.raises(ValueError):
        DemoPlan(1.0)
