"""bot.py as a real process against the emulator in the test process, killed and restarted.

The emulator (and any local site or sink) runs on the test's event loop, so everything here
awaits: the subprocess, its pipes, and polls of the bot's files (read with plain sqlite3 in a
worker thread, read-only). Limits below only stop a broken run from hanging the suite; nothing
measures speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from notifier.testing import DiscordEmulator
from notifier.testing.model import Message
from notifier.testing.processes import CapturedProcess

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 60.0


def text_of(message: Message) -> str:
    """Everything a person reads in a message: content, embeds and attachment names."""
    parts = [message.content, json.dumps(message.embeds, ensure_ascii=False)]
    parts += [a.filename for a in message.attachments]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Config


def write_config(
    tmp_path: Path, emulator: DiscordEmulator, extra: Mapping[str, Any] | None = None
) -> Path:
    """config.yaml for bot.py: the token from the environment (`${TEST_BOT_TOKEN}`), the data
    folder in tmp_path, DEBUG logging to stderr."""
    config: dict[str, Any] = {
        "discord": {"token": "${TEST_BOT_TOKEN}", "api_base": emulator.api_base},
        "storage": {"path": str(tmp_path / "data")},
        "autointel": {"allow_private_networks": True},
        "progress": {"min_interval": 0.2},
        "fanout": {"plugin_dirs": [str(PROJECT_ROOT / "plugins")], "backoff_initial": 0.2},
        "runner": {"shutdown_grace": 5.0},
        "logging": {"level": "DEBUG"},
    }
    for section, values in (extra or {}).items():
        if isinstance(values, Mapping) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The process


@dataclass(kw_only=True)
class BotProcess(CapturedProcess):
    token: str

    async def kill_9(self) -> None:
        """SIGKILL: no handler runs, no buffer is flushed, nothing is closed."""
        self.process.send_signal(signal.SIGKILL)
        assert await self.finish() == -signal.SIGKILL

    async def stop(self) -> None:
        """SIGTERM, a clean exit, and nothing alarming in what it wrote."""
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.finish(), LIMIT_S)
        assert code == 0, self.output()
        self.assert_clean()

    def assert_clean(self) -> None:
        output = self.output()
        assert "Traceback" not in output, output
        assert self.token not in output, "the bot token reached the log"


@contextlib.asynccontextmanager
async def bot_process(emulator: DiscordEmulator, config: Path) -> AsyncIterator[BotProcess]:
    """`python bot.py --config ...`, ready (READY received, commands registered) on entry; killed
    by its own pid if the test leaves it running."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_API_BASE", "DISCORD_TOKEN")}
    env["TEST_BOT_TOKEN"] = emulator.bot_token
    env["PYTHONUNBUFFERED"] = "1"
    ready_before = emulator.ready_count
    bot = await BotProcess.start(
        sys.executable,
        str(PROJECT_ROOT / "bot.py"),
        "--config",
        str(config),
        cwd=PROJECT_ROOT,
        env=env,
        capture_stdout=False,
        token=emulator.bot_token,
    )
    try:
        await until(lambda: emulator.ready_count > ready_before, "READY", bot)
        await emulator.wait_for_commands("autointel", "retrieve_results", timeout_s=LIMIT_S)
        yield bot
    finally:
        await bot.kill()


async def until(
    predicate: Callable[[], Any], what: str, bot: BotProcess, limit_s: float = LIMIT_S
) -> None:
    """Poll `predicate` (sync or async); fail with the bot's output if it dies or time runs out."""

    async def check() -> bool:
        if bot.process.returncode is not None:
            raise AssertionError(
                f"the bot exited ({bot.process.returncode}) waiting for {what}:\n{bot.output()}"
            )
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        return bool(value)

    try:
        async with asyncio.timeout(limit_s):
            while not await check():  # noqa: ASYNC110 - the state is in another process
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}\n{bot.output()[-6000:]}") from None


# ---------------------------------------------------------------------------------------------
# The bot's files, read from outside


@dataclass(frozen=True)
class Row:
    workflow_id: str
    user_id: int
    status: str
    delivery_state: str
    delivered_via: str | None
    ephemeral: bool


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return list(db.execute(sql))
    except sqlite3.OperationalError:  # not created yet, or busy
        return []
    finally:
        db.close()


async def workflow_rows(data_dir: Path) -> dict[str, Row]:
    rows = await asyncio.to_thread(
        _query,
        data_dir / "index.sqlite3",
        "SELECT workflow_id, user_id, status, delivery_state, delivered_via, ephemeral "
        "FROM workflows",
    )
    return {r[0]: Row(r[0], int(r[1]), r[2], r[3], r[4], bool(r[5])) for r in rows}


@dataclass(frozen=True)
class OutboxEntry:
    key: str
    notifier: str
    event: str
    workflow_id: str
    status: str


async def outbox_rows(data_dir: Path) -> list[OutboxEntry]:
    rows = await asyncio.to_thread(
        _query,
        data_dir / "outbox.sqlite3",
        "SELECT idempotency_key, notifier, event, workflow_id, status FROM outbox",
    )
    return [OutboxEntry(*map(str, r)) for r in rows]


def result_file(data_dir: Path, workflow_id: str) -> Path:
    return data_dir / "results" / f"{workflow_id}.json"


def every_message(emulator: DiscordEmulator) -> list[Message]:
    """Every message the emulator holds: channels, DMs and interaction responses."""
    seen: dict[int, Message] = {}
    for channel in emulator.channels.values():
        for message in emulator.channel_messages(channel):
            seen[message.id] = message
    for user in emulator.users:
        for message in emulator.dm_messages(user):
            seen[message.id] = message
    for handle in emulator.interactions:
        for message in handle.messages:
            seen[message.id] = message
    return list(seen.values())
