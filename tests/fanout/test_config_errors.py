"""Config errors in notifier entries name the field path: fatal with `fanout.strict` (and always on
reload), logged and left out otherwise."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.errors import ConfigError
from notifier.events import Event
from notifier.fanout.dispatch import Fanout
from notifier.plugins import PluginContext
from notifier.testing import HttpSink

from .support import make_notice, make_settings, open_fanout, settled

SINK = "json://127.0.0.1:9/unused"

CASES = [
    pytest.param(
        {"plugin": "nope", "on": ["completed"]},
        "notifiers[0].plugin",
        "unknown plugin 'nope' (available: apprise, discord_webhook, dm, email",
        id="unknown-plugin",
    ),
    pytest.param(
        {
            "plugin": "timeout_warning",
            "on": ["started"],
            "options": {"threshold_s": "soon", "urls": [SINK]},
        },
        "notifiers[0].options.threshold_s",
        "(got 'soon')",
        id="bad-option-value",
    ),
    pytest.param(
        {"plugin": "apprise", "on": ["completed"], "options": {"urlz": [SINK]}},
        "notifiers[0].options.urlz",
        "unknown option for plugin 'apprise'",
        id="unknown-option",
    ),
    pytest.param(
        {"plugin": "apprise", "on": ["completed"], "options": {"urls": [SINK, "nonsense://x"]}},
        "notifiers[0].options.urls[1]",
        "Apprise",
        id="bad-apprise-url",
    ),
    pytest.param(
        {"plugin": "email", "on": ["completed"], "options": {"urls": [SINK]}},
        "notifiers[0].options.urls[0]",
        "must be a mailto:// or mailtos:// URL, got json://127.0.0.1:9/***",
        id="email-needs-mailto",
    ),
    pytest.param(
        {"plugin": "discord_webhook", "on": ["failed"], "options": {"url": "discord://123"}},
        "notifiers[0].options.url",
        "webhook id and token",
        id="discord-url-without-token",
    ),
    pytest.param(
        {"plugin": "timeout_warning", "on": ["completed"], "options": {"urls": [SINK]}},
        "notifiers[0].on",
        "plugin 'timeout_warning' does not accept completed (accepts: started)",
        id="event-not-accepted",
    ),
    pytest.param(
        {
            "plugin": "apprise",
            "on": ["completed"],
            "options": {"urls": [SINK]},
            "templates": {"completed": {"body": "{summary} in {elapsed}"}},
        },
        "notifiers[0].templates.completed.body",
        "unknown template field {elapsed} (known: ",
        id="unknown-template-field",
    ),
    pytest.param(
        {
            "plugin": "apprise",
            "on": ["completed"],
            "options": {"urls": [SINK]},
            "templates": {"completed": {"title": "{user.__class__}"}},
        },
        "notifiers[0].templates.completed.title",
        "plain names",
        id="template-attribute-access",
    ),
    pytest.param(
        {
            "plugin": "apprise",
            "on": ["completed"],
            "options": {"urls": [SINK]},
            "templates": {"completed": {"body": "{duration:d}"}},
        },
        "notifiers[0].templates.completed.body",
        "invalid template",
        id="template-bad-format-spec",
    ),
    pytest.param(
        {"plugin": "dm", "on": ["completed"], "options": {"to_requester": False}},
        "notifiers[0].options",
        "set to_requester: true or give user_ids",
        id="dm-without-recipients",
    ),
]


def entry(spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": "under-test", **spec}


@pytest.mark.parametrize(("spec", "field", "message"), CASES)
async def test_strict_start_raises_naming_the_field(
    tmp_path: Path, context: PluginContext, spec: dict[str, Any], field: str, message: str
) -> None:
    settings = make_settings(tmp_path, [entry(spec)], strict=True)
    with pytest.raises(ConfigError) as caught:
        await Fanout.open(settings, context)
    assert caught.value.field == field
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(("spec", "field", "message"), CASES)
async def test_non_strict_start_leaves_the_entry_out_and_logs_it(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    log_lines: list[str],
    spec: dict[str, Any],
    field: str,
    message: str,
) -> None:
    sink = await sinks()
    good = {
        "name": "good",
        "plugin": "apprise",
        "on": ["completed"],
        "options": {"urls": [sink.json_url()]},
    }
    settings = make_settings(tmp_path, [entry(spec), good])
    async with open_fanout(settings, context) as fanout:
        assert fanout.notifier_names == ["good"]
        (error,) = fanout.config_errors
        assert error.field == field
        await fanout.emit(make_notice(Event.COMPLETED))
        await settled(fanout, 1)
    assert len(sink.received) == 1
    assert any(f"{field}: " in line and "under-test" in line for line in log_lines)


async def test_dm_needs_a_running_bot(tmp_path: Path, context: PluginContext) -> None:
    """Without `send_dm` (no bot) a dm notifier is a config error, not a pile of failed rows."""
    no_bot = dataclasses.replace(context, send_dm=None)
    settings = make_settings(tmp_path, [entry({"plugin": "dm", "on": ["completed"]})], strict=True)
    with pytest.raises(ConfigError) as caught:
        await Fanout.open(settings, no_bot)
    assert caught.value.field == "notifiers[0].options"
    assert "send_dm" in caught.value.message


async def test_a_strict_start_names_every_problem_of_every_entry_at_once(
    tmp_path: Path, context: PluginContext
) -> None:
    settings = make_settings(
        tmp_path,
        [
            entry({"plugin": "emial", "on": ["completed"]}),
            {
                "name": "hook",
                "plugin": "timeout_warning",
                "on": ["started", "failed"],
                "options": {"threshold_s": "soon", "urls": [SINK], "priority": 1},
                "templates": {"started": {"body": "{summary} {elapsed}"}},
            },
        ],
        strict=True,
    )
    with pytest.raises(ConfigError) as caught:
        await Fanout.open(settings, context)
    lines = caught.value.lines()
    assert lines[0] == "notifiers[0].plugin: unknown plugin 'emial', did you mean 'email'?"
    assert sorted(line.split(":")[0] for line in lines[1:]) == [
        "notifiers[1].on",
        "notifiers[1].options.priority",
        "notifiers[1].options.threshold_s",
        "notifiers[1].templates.started.body",
    ]
    assert "notifiers[1].options.threshold_s: must be a number (got 'soon')" in lines
    assert not any("Input should" in line or "Extra inputs" in line for line in lines)
