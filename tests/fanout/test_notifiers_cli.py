"""`notifier notifiers list|test` through the real CLI, in a subprocess, against real sinks
(issue 16): a test notice goes through one notifier now, marked as a test, and the command says
what the sink answered, with the exit code a script can act on."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from notifier.testing import HttpSink
from notifier.testing.processes import CapturedProcess, child_env
from notifier.testing.smtp import SmtpServer

from .support import NTFY_PLUGIN

BUILTIN = ["apprise", "discord_webhook", "dm", "email", "timeout_warning"]


async def cli(tmp_path: Path, *args: str) -> tuple[int, list[str], str]:
    """Run `python -m notifier ARGS` in `tmp_path`; (exit code, stdout lines, stderr)."""
    async with CapturedProcess.running(
        sys.executable, "-m", "notifier", *args, env=child_env(), cwd=tmp_path
    ) as child:
        code = await child.finish()
    return code, "".join(child.stdout).splitlines(), child.stderr_text()


def write_config(tmp_path: Path, notifiers: list[dict[str, Any]], **fanout: Any) -> Path:
    path = tmp_path / "config.yaml"
    document = {"fanout": {"timeout": 5, **fanout}, "notifiers": notifiers}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def hook(name: str, sink: HttpSink, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "plugin": "apprise",
        "on": ["completed", "failed"],
        "options": {"urls": [sink.json_url(f"/{name}")]},
        **extra,
    }


async def test_test_sends_one_notice_marked_as_a_test_and_says_the_sink_took_it(
    tmp_path: Path, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    write_config(tmp_path, [hook("ops", sink)])

    code, out, err = await cli(tmp_path, "notifiers", "test", "ops")

    assert (code, err) == (0, "")
    assert out[0] == "sent: notifier 'ops' (apprise), event completed"
    assert out[1].endswith("/ops: sent")
    (received,) = sink.received
    assert received.path == "/ops"
    (body,) = sink.bodies()
    assert body["title"] == "Completed: notifier-test"
    assert (
        "This is a test notice from `notifier notifiers test`; no workflow ran."
        in (body["message"])
    )


async def test_a_sink_that_fails_is_reported_with_its_status_and_exit_1(
    tmp_path: Path, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    sink.statuses.append((503, {"message": "ops sink is down"}))
    write_config(tmp_path, [hook("ops", sink)])

    code, out, _ = await cli(tmp_path, "notifiers", "test", "ops", "--event", "failed")

    assert code == 1
    assert out[0].startswith("failed: notifier 'ops' (apprise), event failed: ")
    assert "HTTP 503" in out[0] and "ops sink is down" in out[0]
    assert out[0].endswith("(the bot would retry it)")
    assert len(sink.received) == 1  # one try, now: nothing is queued or retried


async def test_an_email_notifier_sends_through_a_real_smtp_server(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    mail = {
        "name": "ops-mail",
        "plugin": "email",
        "on": ["failed"],
        "options": {"urls": [smtp_server.url()]},
    }
    write_config(tmp_path, [mail])

    code, out, _ = await cli(tmp_path, "notifiers", "test", "ops-mail", "--event", "failed")

    assert code == 0, out
    assert out[0] == "sent: notifier 'ops-mail' (email), event failed"
    (message,) = smtp_server.messages
    assert message["Subject"] == "Failed: notifier-test"
    assert "this is a test notice, nothing failed" in message.get_content()


async def test_an_unknown_name_lists_the_known_ones_and_exits_2(
    tmp_path: Path, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    write_config(tmp_path, [hook("ops", sink), hook("pager", sink)])

    code, out, err = await cli(tmp_path, "notifiers", "test", "opz")

    assert (code, out) == (2, [])
    assert (
        err == "error: no notifier is named 'opz'; did you mean 'ops'? (configured: ops, pager)\n"
    )
    assert sink.received == []


async def test_an_event_the_plugin_never_receives_exits_2(
    tmp_path: Path, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    warn = {
        "name": "warn",
        "plugin": "timeout_warning",
        "on": ["started"],
        "options": {"urls": [sink.json_url()]},
    }
    write_config(tmp_path, [warn])

    code, _, err = await cli(tmp_path, "notifiers", "test", "warn")

    assert code == 2
    assert err == (
        "error: plugin 'timeout_warning' never receives 'completed' (it accepts: started)\n"
    )
    assert sink.received == []


async def test_a_dm_notifier_says_it_needs_the_bot_instead_of_pretending(tmp_path: Path) -> None:
    dm = {"name": "tell-them", "plugin": "dm", "on": ["completed"], "options": {}}
    write_config(tmp_path, [dm])

    code, out, _ = await cli(tmp_path, "notifiers", "test", "tell-them")

    assert code == 1
    assert out[0] == (
        "not sent: notifier 'tell-them' (dm), event completed: the dm plugin sends DMs through "
        "the bot's Discord connection, which `notifiers test` does not open; test it with the "
        "bot running"
    )
    assert [line.split(":")[0].strip() for line in out[1:]] == ["dm"]  # the one target, refused


async def test_list_shows_the_notifiers_and_every_plugin_with_where_it_came_from(
    tmp_path: Path, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    own = tmp_path / "plugins"
    own.mkdir()
    (own / "ntfy_topic.py").write_text(NTFY_PLUGIN, encoding="utf-8")
    write_config(
        tmp_path,
        [hook("ops", sink), {**hook("pager", sink), "enabled": False}],
        plugin_dirs=["plugins"],
    )

    code, out, err = await cli(tmp_path, "notifiers", "list")

    assert (code, err) == (0, "")
    assert out[0] == "notifiers (config.yaml):"
    assert [line.split() for line in out[1:4]] == [
        ["NAME", "PLUGIN", "EVENTS", "ENABLED"],
        ["ops", "apprise", "completed,", "failed", "yes"],
        ["pager", "apprise", "completed,", "failed", "no"],
    ]
    assert out[4] == "plugins:"
    plugins = {line.split()[0]: line.split()[1:] for line in out[6:]}
    assert sorted(plugins) == sorted([*BUILTIN, "ntfy_topic"])
    assert all(plugins[name][0] == "built-in" for name in BUILTIN)
    assert plugins["ntfy_topic"] == ["plugin_dirs", str(own / "ntfy_topic.py")]
