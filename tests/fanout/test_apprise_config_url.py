"""The `apprise` plugin's `config` is a file or an Apprise config URL (`http://`, `https://`).

The config is served by a real HTTP server on this test's own event loop, so a fetch made on the
event loop could never be answered: the notices below arrive only because Apprise fetches the
config in the executor. The services in the config are real sinks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from notifier.errors import ConfigError
from notifier.events import Event
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, wait_until
from notifier.testing.loopback import LoopbackServer

from .support import make_notice, make_settings, open_fanout, rows_of, settled

CONFIG_PASSWORD = "cfg-pa55word-not-in-any-log"


@dataclass
class ConfigServer(LoopbackServer):
    """Serves one Apprise config (Apprise fetches it with a POST), behind Basic auth when
    `password` is set; answers 503 while `down`."""

    text: str = ""
    content_type: str = "text/yaml"
    password: str = ""
    down: bool = False
    requests: list[str] = field(default_factory=list)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.down:
            return web.Response(status=503, text="config store is down")
        if self.password and request.headers.get("Authorization") is None:
            return web.Response(status=401, text="who are you?")
        return web.Response(text=self.text, content_type=self.content_type)

    def url(self, path: str) -> str:
        auth = f"ops:{self.password}@" if self.password else ""
        return f"http://{auth}127.0.0.1:{self.port}{path}"


def yaml_config(ops: HttpSink, dev: HttpSink) -> str:
    return (
        "urls:\n"
        f"  - {ops.json_url('/ops')}:\n      tag: ops\n"
        f"  - {dev.json_url('/dev')}:\n      tag: dev\n"
    )


def text_config(ops: HttpSink, dev: HttpSink) -> str:
    return f"ops={ops.json_url('/ops')}\ndev={dev.json_url('/dev')}\n"


def config_notifier(config: str, **options: object) -> dict[str, object]:
    return {
        "name": "from-config",
        "plugin": "apprise",
        "on": ["completed"],
        "options": {"config": config, "tags": ["ops"], **options},
    }


@pytest.mark.parametrize(("form", "content_type"), [("yaml", "text/yaml"), ("text", "text/plain")])
async def test_a_config_url_is_fetched_off_the_loop_and_its_tagged_services_get_the_notice(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    log_lines: list[str],
    form: str,
    content_type: str,
) -> None:
    ops, dev = await sinks(), await sinks()
    text = yaml_config(ops, dev) if form == "yaml" else text_config(ops, dev)
    async with ConfigServer(text=text, content_type=content_type, password=CONFIG_PASSWORD) as cfg:
        settings = make_settings(tmp_path, [config_notifier(cfg.url(f"/apprise.{form}"))])
        async with open_fanout(settings, context) as fanout:
            assert cfg.requests == []  # loading the notifier fetches nothing (config check)
            await fanout.emit(make_notice(Event.COMPLETED))
            (row,) = await settled(fanout, 1)

    assert row.status is OutboxStatus.SENT
    assert [r.path for r in ops.received] == ["/ops"]
    assert dev.received == []  # tagged dev: not selected
    assert cfg.requests == [f"POST /apprise.{form}"]  # fetched once, for the first notice
    assert any("1 service(s) loaded tagged ops" in line for line in log_lines)
    assert not [line for line in log_lines if CONFIG_PASSWORD in line]


async def test_while_the_config_cannot_be_fetched_the_other_urls_are_sent_and_it_is_retried(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    log_lines: list[str],
) -> None:
    direct, ops, dev = await sinks(), await sinks(), await sinks()
    async with ConfigServer(text=yaml_config(ops, dev), down=True) as cfg:
        entry = config_notifier(cfg.url("/apprise.yml"), urls=[direct.json_url("/direct")])
        settings = make_settings(
            tmp_path, [entry], max_attempts=1000, backoff_initial=0.05, backoff_max=0.1
        )
        async with open_fanout(settings, context) as fanout:
            await fanout.emit(make_notice(Event.COMPLETED))

            async def config_failed_once() -> bool:
                rows = await rows_of(fanout)
                return bool(rows) and any(t["status"] == "failed" for t in rows[0].targets.values())

            await wait_until(config_failed_once, what="an attempt without the config")
            (row,) = await rows_of(fanout)
            assert row.status is OutboxStatus.PENDING  # owed to the config's services
            assert len(direct.received) == 1  # the other URL did not wait
            (failed,) = [t for t in row.targets.values() if t["status"] == "failed"]
            assert failed["target"] == f"http://127.0.0.1:{cfg.port}/***"
            assert "config not loaded" in failed["errors"][0]
            assert "holds no usable Apprise URL tagged ops" in failed["errors"][0]
            assert "A Connection error occurred" in failed["errors"][0]  # Apprise's own words

            cfg.down = False  # the config store is back: the next retry fetches it
            (row,) = await settled(fanout, 1)

    assert row.status is OutboxStatus.SENT
    assert len(direct.received) == 1  # not sent twice
    assert [r.path for r in ops.received] == ["/ops"]
    assert len(cfg.requests) >= 2
    assert any("config not loaded" in line and "retrying" in line for line in log_lines)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param("ftp://files.example.com/apprise.yml", "not a config URL", id="ftp"),
        pytest.param("https://", "not a config URL", id="no-host"),
        pytest.param("{tmp}/missing.yml", "no such file", id="missing-file"),
        pytest.param("{tmp}", "is a folder, not a file", id="a-folder"),
    ],
)
async def test_anything_but_a_file_or_an_http_url_is_a_config_error_naming_the_option(
    tmp_path: Path, context: PluginContext, config: str, message: str
) -> None:
    settings = make_settings(tmp_path, [config_notifier(config.format(tmp=tmp_path))], strict=True)
    with pytest.raises(ConfigError) as caught:
        await Fanout.open(settings, context)
    assert caught.value.field == "notifiers[0].options.config"
    assert message in caught.value.message
    assert "an Apprise config is a file or an http:// or https:// URL" in caught.value.message
