"""kill -9 of the bot process while notices are queued: the next start sends every one, once.

The bot runs as a real process (`python bot.py --config ...`) against the emulator, which runs on
this test's event loop: everything here awaits (subprocess, pipes, polling) so the emulator keeps
answering the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from notifier.testing import DiscordEmulator
from notifier.testing.loopback import LoopbackServer
from notifier.testing.processes import CapturedProcess
from notifier.testing.site import DemoSite

from .support import text_of, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Limits that only stop a broken run from hanging the suite; nothing here measures speed.
START_LIMIT_S = 60.0
STEP_LIMIT_S = 60.0


# ---------------------------------------------------------------------------------------------
# The sink: first it hangs (never answers), later it answers 200


@dataclass
class Arrival:
    key: str | None
    title: str
    answered: bool = False


@dataclass
class SwitchableSink(LoopbackServer):
    """A json:// sink on 127.0.0.1. While `hanging`, requests are held without an answer;
    afterwards every request is answered 200 at once. `arrivals` holds every request, `delivered`
    the idempotency keys of the requests answered 200."""

    hanging: bool = True
    arrivals: list[Arrival] = field(default_factory=list)
    delivered: list[str | None] = field(default_factory=list)
    held: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def json_url(self, path: str = "/notices") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def held_titles(self) -> list[str]:
        return [a.title for a in self.arrivals if not a.answered]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: Any = json.loads(raw) if raw else {}
        arrival = Arrival(
            key=request.headers.get("Idempotency-Key"), title=str(body.get("title", ""))
        )
        self.arrivals.append(arrival)
        if self.hanging:
            self.held += 1
            try:
                await self._release.wait()  # the client dies first: this answer goes nowhere
            finally:
                self.held -= 1
            return web.json_response({"ok": False}, status=503)
        arrival.answered = True
        self.delivered.append(arrival.key)
        return web.json_response({"ok": True})

    async def close(self) -> None:
        self._release.set()
        await super().close()


# ---------------------------------------------------------------------------------------------
# The bot process


async def start_bot(config: Path) -> CapturedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_API_BASE"}
    env["PYTHONUNBUFFERED"] = "1"
    return await CapturedProcess.start(
        sys.executable, "bot.py", "--config", str(config), cwd=PROJECT_ROOT, env=env
    )


@contextlib.asynccontextmanager
async def bot_process(config: Path) -> AsyncIterator[CapturedProcess]:
    """A bot process that is killed (by its own pid) if the test leaves it running."""
    bot = await start_bot(config)
    try:
        yield bot
    finally:
        await bot.kill()


async def until(
    predicate: Callable[[], Any], what: str, bot: CapturedProcess, limit_s: float = STEP_LIMIT_S
) -> None:
    """Poll `predicate`; if the bot process dies or the limit passes, fail with its output."""

    async def check() -> bool:
        if bot.process.returncode is not None:
            raise AssertionError(
                f"the bot exited ({bot.process.returncode}) while waiting for {what}:\n"
                + bot.output()
            )
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        return bool(value)

    try:
        await wait_until(check, timeout_s=limit_s, interval_s=0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}\n{bot.output()}") from None


def _outbox_rows(path: Path) -> list[tuple[str, str, str]]:
    """(idempotency key, event, status) of every outbox row, read straight from the file."""
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=5.0)
    try:
        return [
            (str(k), str(e), str(s))
            for k, e, s in db.execute("SELECT idempotency_key, event, status FROM outbox")
        ]
    except sqlite3.OperationalError:  # the table is not created yet
        return []
    finally:
        db.close()


async def outbox_rows(path: Path) -> list[tuple[str, str, str]]:
    return await asyncio.to_thread(_outbox_rows, path)


def write_config(
    tmp_path: Path, emulator: DiscordEmulator, sink: SwitchableSink
) -> tuple[Path, Path]:
    """config.yaml for the bot process; returns (config file, outbox file)."""
    data_dir = tmp_path / "data"
    config = {
        "discord": {"token": emulator.bot_token, "api_base": emulator.api_base},
        "storage": {"path": str(data_dir)},
        "autointel": {"allow_private_networks": True},
        "progress": {"min_interval": 0.2},
        # A long attempt timeout: the held notices stay in their first attempt until the kill.
        "fanout": {
            "plugin_dirs": [str(PROJECT_ROOT / "plugins")],
            "timeout": 600.0,
            "backoff_initial": 0.2,
        },
        "runner": {"shutdown_grace": 5.0},
        "logging": {"level": "DEBUG"},
        "notifiers": [
            {
                "name": "ops",
                "plugin": "apprise",
                "on": ["started", "completed"],
                "options": {"urls": [sink.json_url()]},
            }
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path, data_dir / "outbox.sqlite3"


# ---------------------------------------------------------------------------------------------
# The test


async def test_notices_queued_before_a_kill_9_are_sent_once_after_the_restart(
    discord_emulator: DiscordEmulator, site: DemoSite, tmp_path: Path
) -> None:
    emulator = discord_emulator
    async with SwitchableSink() as sink:
        config, outbox = write_config(tmp_path, emulator, sink)

        # 1. The first process: a workflow runs to the end, its notices hang at the sink.
        async with bot_process(config) as first:
            await until(
                lambda: emulator.command_named("autointel"), "commands", first, START_LIMIT_S
            )
            await emulator.wait_for_commands("autointel", "retrieve_results", timeout_s=10)
            handle = await emulator.trigger_command(
                "autointel", {"url": site.url, "depth": "quick"}, user="alice"
            )
            await until(lambda: sink.held == 2, "both notices held by the sink", first)
            assert sorted(sink.held_titles()) == ["Completed: autointel", "Started: autointel"]
            rows = await outbox_rows(outbox)
            assert sorted((e, s) for _, e, s in rows) == [
                ("completed", "pending"),
                ("started", "pending"),
            ]
            # The user got the result; only the notices are still owed.
            await handle.wait_for_message(
                lambda m: "Resilience Handbook" in text_of(m), timeout_s=STEP_LIMIT_S
            )
            first.process.send_signal(signal.SIGKILL)
            assert await first.finish() == -signal.SIGKILL

        held_keys = {a.key for a in sink.arrivals}
        assert None not in held_keys
        assert len(held_keys) == 2
        assert sink.delivered == []
        # Killed mid-send: both rows are still owed, on disk.
        assert sorted(s for _, _, s in await outbox_rows(outbox)) == ["pending", "pending"]

        # 2. The sink recovers; the second process sends what the first one owed.
        sink.hanging = False
        async with bot_process(config) as second:
            await until(lambda: len(sink.delivered) >= 2, "the owed notices delivered", second)

            async def all_sent() -> bool:
                rows = await outbox_rows(outbox)
                return len(rows) == 2 and all(s == "sent" for _, _, s in rows)

            await until(all_sent, "every outbox row marked sent", second)
            await emulator.wait_until_ready_count(2, timeout_s=START_LIMIT_S)
            second.process.send_signal(signal.SIGTERM)
            code = await second.finish()
            stderr = "".join(second.stderr)
            assert code == 0, second.output()
            assert "Traceback" not in stderr, stderr
            assert "signal received: shutting down gracefully" in stderr

    # Each owed notice arrived exactly once, with the key it was first sent with.
    counts = Counter(sink.delivered)
    assert all(n == 1 for n in counts.values()), counts
    assert set(counts) == held_keys
    answered = sorted(a.title for a in sink.arrivals if a.answered)
    assert answered == ["Completed: autointel", "Started: autointel"]
    final = await outbox_rows(outbox)
    assert {k for k, _, _ in final} == held_keys
