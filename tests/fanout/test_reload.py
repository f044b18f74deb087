"""reload: an invalid new config is rejected and the running notifiers keep working; a valid one
swaps, and pending notices of removed notifiers are marked failed with a clear error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.errors import ConfigError
from notifier.events import Event
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, wait_until

from .support import make_notice, make_settings, open_fanout, rows_of, settled


def hook(name: str, sink: HttpSink, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "plugin": "apprise",
        "on": ["completed"],
        "options": {"urls": [sink.json_url(f"/{name}")]},
        **extra,
    }


async def test_invalid_reload_keeps_the_running_set_and_a_valid_one_swaps(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    old_sink, new_sink = await sinks(), await sinks()
    running = make_settings(tmp_path, [hook("old", old_sink)])
    invalid = make_settings(
        tmp_path,
        [
            hook("new", new_sink),
            hook("typo", new_sink, templates={"completed": {"body": "{sumary}"}}),
        ],
        strict=True,
    )
    valid = make_settings(tmp_path, [hook("new", new_sink)])

    async with open_fanout(running, context) as fanout:
        with pytest.raises(ConfigError) as caught:
            await fanout.reload(invalid)
        assert caught.value.field == "notifiers[1].templates.completed.body"
        assert fanout.notifier_names == ["old"]

        await fanout.emit(make_notice(Event.COMPLETED))
        await settled(fanout, 1)
        assert [r.path for r in old_sink.received] == ["/old"]

        await fanout.reload(valid)
        assert fanout.notifier_names == ["new"]
        await fanout.emit(make_notice(Event.COMPLETED))
        await settled(fanout, 2)

    assert [r.path for r in old_sink.received] == ["/old"]
    assert [r.path for r in new_sink.received] == ["/new"]


async def test_a_reload_without_strict_leaves_a_broken_notifier_out_and_says_so(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    log_lines: list[str],
) -> None:
    sink = await sinks()
    settings = make_settings(tmp_path, [hook("ok", sink)])
    bad = make_settings(tmp_path, [hook("ok", sink), {**hook("x", sink), "plugin": "emial"}])
    async with open_fanout(settings, context) as fanout:
        report = await fanout.reload(bad)
        assert fanout.notifier_names == ["ok"]
        assert (
            report.line
            == "1 of 2 notifiers started; left out: x (unknown plugin 'emial', did you mean 'email'?)"
        )
        assert [e.field for e in fanout.config_errors] == ["notifiers[1].plugin"]
    assert f"WARNING {report.line}\n" in log_lines


async def test_pending_notices_of_a_removed_notifier_are_marked_failed(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    down = await sinks()
    down.statuses.extend([(503, {"message": "down"})] * 3)
    keep = await sinks()
    before = make_settings(
        tmp_path,
        [hook("flaky", down), hook("keep", keep)],
        backoff_initial=60.0,
        backoff_max=60.0,
        max_attempts=5,
    )
    after = make_settings(tmp_path, [hook("keep", keep)])
    async with open_fanout(before, context) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED))

        async def flaky_in_backoff() -> bool:
            rows = await rows_of(fanout, "flaky")
            return bool(rows) and rows[0].attempts == 1

        await wait_until(flaky_in_backoff, what="the flaky notifier is waiting to retry")
        await fanout.reload(after)
        (flaky,) = await rows_of(fanout, "flaky")
        await wait_until(lambda: len(keep.received) == 1, what="keep got its notice")

    assert flaky.status is OutboxStatus.FAILED
    assert flaky.last_error is not None
    assert "'flaky' is not configured any more" in flaky.last_error
    assert f"outbox retry {flaky.id}" in flaky.last_error


async def test_a_strict_reload_with_a_broken_plugin_file_is_refused_naming_the_file(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    """Refused as a config error (what `/notifier reload` and SIGHUP answer), not a crash."""
    sink = await sinks()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "pager.py").write_text("import not_a_module_anywhere\n", encoding="utf-8")
    settings = make_settings(tmp_path, [hook("ok", sink)])
    broken = make_settings(tmp_path, [hook("ok", sink)], plugin_dirs=[str(plugins)], strict=True)
    async with open_fanout(settings, context) as fanout:
        with pytest.raises(ConfigError) as caught:
            await fanout.reload(broken)
        assert caught.value.field == "fanout.plugin_dirs"
        assert str(plugins / "pager.py") in caught.value.message
        assert "ModuleNotFoundError" in caught.value.message
        assert fanout.notifier_names == ["ok"]
