"""bot.py as a real process against the emulator in the test process, killed and restarted
(`notifier.testing.bot_process`): its config file (`write_config`, which is
`notifier.testing.processes.write_bot_config`), and its files read from outside.

The emulator (and any local site or sink) runs on the test's event loop, so everything here
awaits: polls of the bot's files are read with plain sqlite3 in a worker thread, read-only.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notifier.store.step_log import STEPS_DIR, latest, read_frames
from notifier.testing import DiscordEmulator, HttpSink
from notifier.testing.processes import write_bot_config as write_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Config


def workflow_file(tmp_path: Path, name: str, source: str) -> dict[str, Any]:
    """Write a workflow file `name`.py into tmp_path/workflows; returns the config section that
    makes the bot find it (pass it in `write_config`'s `extra`)."""
    folder = tmp_path / "workflows"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    return {"workflows": {"dirs": [str(folder)]}}


async def stages(data_dir: Path) -> list[str]:
    """The stage each workflow's row last recorded."""
    rows = await asyncio.to_thread(
        _query, data_dir / "index.sqlite3", "SELECT stage FROM workflows"
    )
    return [str(r[0]) for r in rows]


async def step_rows(data_dir: Path, workflow_id: str) -> list[tuple[int, str]]:
    """(index, name) of a workflow's recorded steps, as the bot's step file holds them."""
    data = await asyncio.to_thread(_read_if_any, data_dir / STEPS_DIR / f"{workflow_id}.steps")
    frames, _ = read_frames(data)
    return [(frame.index, frame.name) for frame in latest(frames)]


def _read_if_any(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def config_with_ops(
    tmp_path: Path,
    emulator: DiscordEmulator,
    sink: HttpSink,
    events: list[str],
    *more_notifiers: dict[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """`write_config` with an `ops` notifier posting `events` to `sink` (Apprise json://) beside
    `more_notifiers`. A long attempt timeout keeps a held notice in its first attempt until the
    kill."""
    ops = {
        "name": "ops",
        "plugin": "apprise",
        "on": events,
        "options": {"urls": [sink.json_url("/notices")]},
    }
    return write_config(
        tmp_path,
        emulator,
        {"fanout": {"timeout": 600.0}, "notifiers": [ops, *more_notifiers], **(extra or {})},
    )


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
