"""README "Adding a notifier plugin": the example file, dropped into a plugins folder, is found by
the project's plugin discovery, configured by the README's YAML, and sends to a local sink standing
in for ntfy.sh (the only change to the README's YAML is that URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from notifier.config import parse_config
from notifier.events import Event, Notice
from notifier.fanout.discovery import discover_plugins
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import (
    PermanentSendError,
    PluginContext,
    RenderedNotice,
    TransientSendError,
)
from notifier.testing import HttpSink, wait_until

from .readme import block

README_URL = "https://ntfy.sh/my-topic"


def write_plugin(folder: Path) -> Path:
    code = block("python", "# plugins/ntfy_topic.py")
    name = code.first_line.removeprefix("# plugins/").strip()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(code.text, encoding="utf-8")
    return path


def readme_yaml(url: str) -> str:
    """The README's YAML block, pointed at `url` instead of ntfy.sh."""
    text = block("yaml", "notifiers:").text
    assert text.count(README_URL) == 1
    return text.replace(README_URL, url)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as running:
        yield running


@pytest.fixture
async def context() -> AsyncIterator[PluginContext]:
    executor = ThreadPoolExecutor(max_workers=1)
    async with aiohttp.ClientSession() as http:
        yield PluginContext(http=http, executor=executor)
    executor.shutdown(wait=False)


def notice(event: Event = Event.COMPLETED) -> Notice:
    return Notice(
        event=event,
        workflow_id="0123456789abcdef0123456789abcdef",
        user_id=7,
        user_name="alice",
        command="autointel",
        options={"url": "https://example.org/", "depth": "deep"},
        summary="15 pages analysed",
        duration_s=754.0,
    )


def test_discovery_finds_the_example_by_its_name(tmp_path: Path) -> None:
    path = write_plugin(tmp_path / "plugins")
    registry = discover_plugins([path.parent], strict=True)
    assert registry.errors == ()
    plugin = registry.get("ntfy_topic")
    assert plugin is not None
    assert registry.sources["ntfy_topic"].endswith("ntfy_topic.py")
    assert plugin.events == frozenset({Event.COMPLETED, Event.FAILED})


async def test_the_readme_config_sends_a_notice_through_the_example(
    tmp_path: Path, sink: HttpSink, context: PluginContext
) -> None:
    folder = write_plugin(tmp_path / "plugins").parent
    # config.yaml as an operator would write it: the README's block plus where things live.
    text = readme_yaml(sink.url("/my-topic")) + (
        f"storage: {{path: {tmp_path / 'data'}}}\n"
        f"fanout: {{plugin_dirs: [{folder}], strict: true}}\n"
    )
    settings = parse_config(text, env={}, source="config.yaml")
    fanout = await Fanout.open(settings, context)
    try:
        assert fanout.notifier_names == ["phone"]
        await fanout.emit(notice(Event.COMPLETED))
        await fanout.emit(notice(Event.STARTED))  # not in `on:`: nobody gets it

        async def settled() -> bool:
            rows = await fanout.outbox.rows(limit=None)
            return len(rows) == 1 and rows[0].status is OutboxStatus.SENT

        await wait_until(settled, what="the completed notice sent")
    finally:
        await fanout.close()
    (request,) = sink.received
    assert (request.method, request.path) == ("POST", "/my-topic")
    title, _, text = request.raw.decode().partition("\n")
    assert title == "Completed: autointel"
    assert "completed in 12m 34s. 15 pages analysed" in text


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, TransientSendError), (429, TransientSendError), (404, PermanentSendError)],
)
async def test_the_example_tells_transient_from_permanent_failures(
    tmp_path: Path, sink: HttpSink, context: PluginContext, status: int, error: type[Exception]
) -> None:
    registry = discover_plugins([write_plugin(tmp_path / "plugins").parent], strict=True)
    cls = registry.get("ntfy_topic")
    assert cls is not None
    (entry,) = parse_config(readme_yaml(sink.url("/my-topic")), env={}).notifiers
    plugin = cls(cls.Options.model_validate(entry.options), context)
    sink.statuses.append(status)
    with pytest.raises(error, match=str(status)):
        await plugin.send(notice(), RenderedNotice(title="t", body="b"))
