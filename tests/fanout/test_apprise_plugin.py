"""The `apprise` plugin: URL lists and config files with tags; json:// natively with the same body
Apprise's NotifyJSON sends; everything else through Apprise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from notifier.events import Event
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink
from notifier.testing.smtp import SmtpServer

from .support import make_notice, make_settings, open_fanout, settled


async def test_native_json_body_is_the_body_apprise_sends(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    url = sink.json_url("/hook")
    settings = make_settings(
        tmp_path,
        [
            {"name": "native", "plugin": "apprise", "on": ["failed"], "options": {"urls": [url]}},
            {
                "name": "through-apprise",
                "plugin": "apprise",
                "on": ["failed"],
                "options": {"urls": [url], "native": False},
            },
        ],
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.FAILED, error="disk full"))
        rows = await settled(fanout, 2)
    assert {r.status for r in rows} == {OutboxStatus.SENT}
    by_agent = {r.headers["User-Agent"]: r for r in sink.received}
    assert set(by_agent) == {"Apprise"}  # NotifyJSON's app_id in both cases
    bodies = [r.body for r in sink.received]
    assert bodies[0] == bodies[1]
    assert bodies[0] == {
        "version": "1.0",
        "title": "Failed: autointel",
        "message": "autointel for alice failed: disk full",
        "attachments": [],
        "type": "failure",
    }
    native = [r for r in sink.received if r.key is not None]
    assert len(native) == 1  # only the native post carries the Idempotency-Key header


async def test_json_url_payload_mapping_headers_and_basic_auth(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    url = f"json://bot:hunter2hunter2@127.0.0.1:{sink.port}/in?:message=text&:type=&:source=bot&+X-Team=ops"
    settings = make_settings(
        tmp_path,
        [{"name": "mapped", "plugin": "apprise", "on": ["completed"], "options": {"urls": url}}],
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED))
        await settled(fanout, 1)
    (request,) = sink.received
    assert request.path == "/in"
    assert request.headers["X-Team"] == "ops"
    assert request.headers["Authorization"].startswith("Basic ")
    assert set(request.body) == {"version", "title", "text", "attachments", "source"}
    assert request.body["source"] == "bot"


@pytest.mark.parametrize("form", ["yaml", "text"])
async def test_config_file_services_are_selected_by_tag(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    smtp_server: SmtpServer,
    form: str,
) -> None:
    ops, dev = await sinks(), await sinks()
    if form == "yaml":
        config = tmp_path / "apprise.yml"
        config.write_text(
            "urls:\n"
            f"  - {ops.json_url('/ops')}:\n      tag: ops\n"
            f"  - {dev.json_url('/dev')}:\n      tag: dev\n"
            f"  - {smtp_server.url()}:\n      tag: ops\n"
        )
    else:
        config = tmp_path / "apprise.txt"
        config.write_text(
            f"ops={ops.json_url('/ops')}\ndev={dev.json_url('/dev')}\nops={smtp_server.url()}\n"
        )
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "tagged",
                "plugin": "apprise",
                "on": ["persisted"],
                "options": {"config": str(config), "tags": ["ops"]},
            }
        ],
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.PERSISTED))
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.SENT
    assert [r.path for r in ops.received] == ["/ops"]
    assert dev.received == []
    assert len(smtp_server.messages) == 1  # mailto:// went through Apprise in the executor
    assert sorted(t["status"] for t in row.targets.values()) == ["sent", "sent"]


async def test_a_retry_skips_the_targets_that_already_have_the_notice(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    steady, flaky = await sinks(), await sinks()
    flaky.statuses.append((503, {"message": "try later"}))
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "both",
                "plugin": "apprise",
                "on": ["completed"],
                "options": {"urls": [steady.json_url(), flaky.json_url()]},
            }
        ],
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED))
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.SENT
    assert row.attempts == 2
    assert len(steady.received) == 1  # not sent again on the retry
    assert len(flaky.received) == 2
