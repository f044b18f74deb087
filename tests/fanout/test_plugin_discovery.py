"""Plugins from a `plugins/` folder file and from an installed entry point receive notices; a broken
plugin file is named in the error, left out when not strict and fatal when strict."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from notifier.errors import PluginError
from notifier.events import Event
from notifier.fanout.discovery import BUILTIN_PLUGIN_DIR, discover_plugins
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink

from .support import make_notice, make_settings, open_fanout, settled


def recorder_source(plugin_name: str) -> str:
    """A complete third-party plugin: appends each notice it gets to a JSON-lines file."""
    return textwrap.dedent(
        f'''
        """Test plugin: records notices in a file."""
        from __future__ import annotations

        import json
        from typing import ClassVar

        from pydantic import BaseModel, ConfigDict

        from notifier.events import Event, Notice
        from notifier.plugins import Plugin, PluginContext, RenderedNotice, SendOutcome


        class RecorderOptions(BaseModel):
            model_config = ConfigDict(extra="forbid", frozen=True)
            path: str


        class RecorderPlugin(Plugin[RecorderOptions]):
            name: ClassVar[str] = "{plugin_name}"
            events: ClassVar[frozenset[Event]] = frozenset({{Event.COMPLETED, Event.FAILED}})
            Options: ClassVar[type[BaseModel]] = RecorderOptions

            async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
                line = {{"workflow_id": notice.workflow_id, "title": message.title,
                         "key": message.idempotency_key}}
                with open(self.options.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line) + "\\n")
                return SendOutcome.sent()
        '''
    )


def recorded(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_plugin_file_in_a_plugin_dir_receives_notices(
    tmp_path: Path, context: PluginContext
) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "file_recorder.py").write_text(recorder_source("file_recorder"))
    out = tmp_path / "got.jsonl"
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "rec",
                "plugin": "file_recorder",
                "on": ["completed"],
                "options": {"path": str(out)},
            }
        ],
        plugin_dirs=[str(plugin_dir)],
    )
    notice = make_notice(Event.COMPLETED)
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(notice)
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.SENT
    assert recorded(out) == [
        {
            "workflow_id": notice.workflow_id,
            "title": "Completed: autointel",
            "key": row.idempotency_key,
        }
    ]


@pytest.fixture
def installed_entry_point(tmp_path: Path) -> Iterator[str]:
    """A tiny installed distribution (dist-info with entry_points.txt) on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "ep_recorder_plugin.py").write_text(recorder_source("ep_recorder"))
    dist_info = site / "ep_recorder_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ep-recorder-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[notifier.plugins]\nep_recorder = ep_recorder_plugin:RecorderPlugin\n"
    )
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield "ep_recorder"
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("ep_recorder_plugin", None)
        importlib.invalidate_caches()


async def test_a_plugin_from_an_installed_entry_point_receives_notices(
    tmp_path: Path, context: PluginContext, installed_entry_point: str
) -> None:
    out = tmp_path / "got.jsonl"
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "rec",
                "plugin": installed_entry_point,
                "on": ["failed"],
                "options": {"path": str(out)},
            }
        ],
    )
    notice = make_notice(Event.FAILED, error="x")
    async with open_fanout(settings, context) as fanout:
        assert "entry point 'ep_recorder'" in discover_plugins().sources["ep_recorder"]
        await fanout.emit(notice)
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.SENT
    assert [r["workflow_id"] for r in recorded(out)] == [notice.workflow_id]


def test_builtin_plugins_are_discovered_from_the_project_plugins_folder() -> None:
    registry = discover_plugins()
    assert {"email", "discord_webhook", "apprise", "dm", "timeout_warning"} <= set(registry.names)
    assert registry.sources["email"] == str(BUILTIN_PLUGIN_DIR / "email.py")
    assert registry.errors == ()


BROKEN = [
    pytest.param("def broken(:\n", "SyntaxError", id="syntax-error"),
    pytest.param("import does_not_exist_anywhere_xyz\n", "ModuleNotFoundError", id="import-error"),
    pytest.param("X = 1\n", "defines no plugin class", id="no-plugin-class"),
    pytest.param(
        recorder_source("bad_events").replace(
            "frozenset({Event.COMPLETED, Event.FAILED})", "frozenset()"
        ),
        "events must be a non-empty frozenset",
        id="empty-events",
    ),
    pytest.param(
        recorder_source("lax_options").replace('extra="forbid", ', ""),
        "extra='forbid'",
        id="options-allow-extra",
    ),
    pytest.param(recorder_source("Bad-Name"), "name must be lower-case", id="bad-name"),
    pytest.param(
        recorder_source("sync_send").replace("async def send", "def send"),
        "must be an `async def`",
        id="sync-send",
    ),
    pytest.param(
        recorder_source("raises_at_import") + "\nraise RuntimeError('kaboom at import')\n",
        "RuntimeError: kaboom at import",
        id="raises-at-import",
    ),
]


@pytest.mark.parametrize(("source", "expected"), BROKEN)
async def test_a_broken_plugin_file_is_named_and_left_out_when_not_strict(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    log_lines: list[str],
    source: str,
    expected: str,
) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    broken = plugin_dir / "broken_plugin.py"
    broken.write_text(source)
    sink = await sinks()
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "still-works",
                "plugin": "apprise",
                "on": ["completed"],
                "options": {"urls": [sink.json_url()]},
            }
        ],
        plugin_dirs=[str(plugin_dir)],
    )
    async with open_fanout(settings, context) as fanout:
        (error,) = fanout.plugin_errors
        assert error.source == str(broken)
        assert expected in error.message
        await fanout.emit(make_notice(Event.COMPLETED))
        await settled(fanout, 1)
    assert len(sink.received) == 1  # the bot started and its other notifiers work
    assert any(str(broken) in line and expected in line for line in log_lines)


@pytest.mark.parametrize(("source", "expected"), BROKEN)
async def test_a_broken_plugin_file_stops_a_strict_start(
    tmp_path: Path, context: PluginContext, source: str, expected: str
) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    broken = plugin_dir / "broken_plugin.py"
    broken.write_text(source)
    settings = make_settings(tmp_path, [], plugin_dirs=[str(plugin_dir)], strict=True)
    with pytest.raises(PluginError) as caught:
        await Fanout.open(settings, context)
    assert str(broken) in str(caught.value)
    assert expected in str(caught.value)
    assert not (tmp_path / "outbox.sqlite3").exists()  # nothing was started


def test_two_folders_may_both_hold_a_file_of_the_same_name(tmp_path: Path) -> None:
    for folder, name in (("a", "rec_a"), ("b", "rec_b")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "recorder.py").write_text(recorder_source(name))
    registry = discover_plugins([tmp_path / "a", tmp_path / "b"])
    assert {"rec_a", "rec_b"} <= set(registry.names)
    assert registry.errors == ()
    # plugins/email.py is imported under a prefixed name: the stdlib `email` stays itself.
    import email

    assert Path(str(email.__file__)).parent.name == "email"
    assert Path(str(email.__file__)).parent.parent.name != "plugins"


def test_a_second_plugin_with_a_taken_name_is_an_error_naming_both(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mail_again.py").write_text(recorder_source("email"))
    registry = discover_plugins([tmp_path / "a"])
    (error,) = registry.errors
    assert error.source == str(tmp_path / "a" / "mail_again.py")
    assert str(BUILTIN_PLUGIN_DIR / "email.py") in error.message
    assert registry.sources["email"] == str(BUILTIN_PLUGIN_DIR / "email.py")
