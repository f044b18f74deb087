"""Start and reload apply the same rules to the same file (issue 16): one table of broken
notifiers, each written to a config file and read with `load_config` (so errors carry lines), run
through a start (`Fanout.open`) and through a reload of a running fanout. With `fanout.strict`
both refuse the file with the same lines; without it both leave the broken notifier out, loudly,
with the same WARNING line, and start the others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.config import load_config
from notifier.errors import ConfigError
from notifier.fanout.dispatch import Fanout
from notifier.plugins import PluginContext
from notifier.testing import HttpSink

from .support import NTFY_PLUGIN, make_settings


@dataclass(frozen=True)
class Broken:
    """One broken notifier entry and what is wrong with it."""

    entry: dict[str, Any]
    field: str  # the field the error names
    reason: str  # the words in the "left out" line


CASES = {
    "unknown-plugin": Broken(
        {"name": "phone", "plugin": "ntfy_topik", "on": ["completed"], "options": {"url": "x"}},
        "notifiers[1].plugin",
        "unknown plugin 'ntfy_topik', did you mean 'ntfy_topic'?",
    ),
    "bad-options": Broken(
        {
            "name": "phone",
            "plugin": "ntfy_topic",
            "on": ["completed"],
            "options": {"url": "x", "topic": "alerts"},
        },
        "notifiers[1].options.topic",
        "options.topic: unknown option for plugin 'ntfy_topic'",
    ),
    "event-not-accepted": Broken(
        {"name": "phone", "plugin": "ntfy_topic", "on": ["started"], "options": {"url": "x"}},
        "notifiers[1].on",
        "plugin 'ntfy_topic' does not accept started (accepts: completed, failed)",
    ),
    "unknown-template-field": Broken(
        {
            "name": "phone",
            "plugin": "ntfy_topic",
            "on": ["completed"],
            "options": {"url": "x"},
            "templates": {"completed": {"title": "{sumary}"}},
        },
        "notifiers[1].templates.completed.title",
        "templates.completed.title: unknown template field {sumary}",
    ),
}


@dataclass(frozen=True)
class Outcome:
    refused: bool
    lines: tuple[str, ...]  # the error's lines (refused), or the WARNING "left out" line
    running: tuple[str, ...]  # the notifiers running afterwards


def good_entry(sink: HttpSink) -> dict[str, Any]:
    return {
        "name": "ops",
        "plugin": "apprise",
        "on": ["completed"],
        "options": {"urls": [sink.json_url()]},
    }


def write_config(tmp_path: Path, notifiers: list[dict[str, Any]], *, strict: bool) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "ntfy_topic.py").write_text(NTFY_PLUGIN, encoding="utf-8")
    path = tmp_path / "config.yaml"
    document = {
        # Relative paths: they are read relative to the file's folder.
        "storage": {"path": "data"},
        "fanout": {"strict": strict, "plugin_dirs": ["plugins"], "outbox_path": "outbox.sqlite3"},
        "notifiers": notifiers,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def line_of(config: Path, field: str) -> int:
    """The line of `field`'s key in the broken entry (the one named phone)."""
    lines = config.read_text(encoding="utf-8").splitlines()
    key = field.rsplit(".", 1)[-1]  # written quoted if YAML 1.1 reads it as a boolean: 'on'

    entry = lines.index("- name: phone")
    return next(
        number
        for number, text in enumerate(lines[entry:], start=entry + 1)
        if text.strip().startswith((f"{key}:", f"'{key}':"))
    )


def left_out_lines(log_lines: list[str]) -> tuple[str, ...]:
    return tuple(
        line.removeprefix("WARNING ").rstrip("\n")
        for line in log_lines
        if line.startswith("WARNING ") and "notifiers started" in line
    )


async def start(config: Path, context: PluginContext, log_lines: list[str]) -> Outcome:
    log_lines.clear()
    try:
        fanout = await Fanout.open(load_config(config, env={}), context)
    except ConfigError as exc:
        return Outcome(True, tuple(exc.lines()), ())
    try:
        return Outcome(False, left_out_lines(log_lines), tuple(fanout.notifier_names))
    finally:
        await fanout.close(drain_timeout_s=0)


async def reload(
    config: Path, tmp_path: Path, context: PluginContext, sink: HttpSink, log_lines: list[str]
) -> Outcome:
    running = make_settings(tmp_path / "running", [good_entry(sink)])
    fanout = await Fanout.open(running, context)
    try:
        log_lines.clear()
        try:
            await fanout.reload(load_config(config, env={}))
        except ConfigError as exc:
            return Outcome(True, tuple(exc.lines()), tuple(fanout.notifier_names))
        return Outcome(False, left_out_lines(log_lines), tuple(fanout.notifier_names))
    finally:
        await fanout.close(drain_timeout_s=0)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "not-strict"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_start_and_reload_treat_a_broken_notifier_alike(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    log_lines: list[str],
    case: str,
    strict: bool,
) -> None:
    broken = CASES[case]
    sink = await sinks()
    (tmp_path / "running").mkdir()
    config = write_config(tmp_path, [good_entry(sink), broken.entry], strict=strict)

    at_start = await start(config, context, log_lines)
    on_reload = await reload(config, tmp_path, context, sink, log_lines)

    assert at_start.refused == on_reload.refused == strict
    assert at_start.lines == on_reload.lines
    assert on_reload.running == ("ops",)  # refused: the old set stays; not: the new good one
    if strict:
        assert len(at_start.lines) == 1, at_start.lines
        (error,) = at_start.lines
        assert error.startswith(f"{config}:{line_of(config, broken.field)}: {broken.field}: ")
        assert broken.reason in error
    else:
        (line,) = at_start.lines
        assert line.startswith(f"1 of 2 notifiers started; left out: phone ({broken.reason}")
        assert at_start.running == ("ops",)
