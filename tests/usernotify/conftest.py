"""Fixtures for users' own notices: real parts only. An aiosmtpd server on 127.0.0.1 that can
refuse chosen recipients with a 550 (in the words a test chooses), the users' settings store as
the bot opens it (SQLite in tmp_path; PostgreSQL too for the tests that ask for `backend`), a
recording `send_dm`, a clock the test moves, and every log line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from loguru import logger

from notifier.config import Settings, StorageSettings
from notifier.fanout.plugin import PluginContext
from notifier.store.user_settings import UserSettingsStore, open_user_settings
from notifier.testing.fanout_settings import fast_fanout
from notifier.testing.smtp import SmtpServer, serve_smtp

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with serve_smtp() as server:
        yield server


class DiscordRefusal(Exception):
    """Shaped like nextcord's HTTPException: `status` and Discord's JSON `code`."""

    def __init__(self, status: int, code: int) -> None:
        super().__init__(f"{status} (error code: {code})")
        self.status = status
        self.code = code


@dataclass
class DMs:
    """The bot's `send_dm`, recording; users in `closed` answer 403/50007 like Discord."""

    sent: list[tuple[int, str, dict[str, Any] | None]] = field(default_factory=list)
    closed: set[int] = field(default_factory=set)

    async def __call__(
        self, user_id: int, content: str, embed: dict[str, Any] | None, nonce: str | None = None
    ) -> None:
        if user_id in self.closed:
            raise DiscordRefusal(403, 50007)
        self.sent.append((user_id, content, embed))

    def to(self, user_id: int) -> list[str]:
        return [content for uid, content, _ in self.sent if uid == user_id]


@pytest.fixture
def dms() -> DMs:
    return DMs()


@pytest.fixture
async def context(dms: DMs) -> AsyncIterator[PluginContext]:
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-usernotify")
    async with aiohttp.ClientSession() as http:
        yield PluginContext(http=http, executor=executor, send_dm=dms)
    executor.shutdown(wait=False, cancel_futures=True)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_settings(
    tmp_path: Path, smtp: SmtpServer | None = None, *, allow_private: bool = True, **users: Any
) -> Settings:
    """Settings with users' notices on (e-mail through `smtp` when given), loopback callbacks
    allowed (`autointel.allow_private_networks`, unless not `allow_private`), fast retries and an
    outbox in tmp_path."""
    notifiers: list[dict[str, Any]] = []
    section: dict[str, Any] = {"enabled": True, **users}
    if smtp is not None:
        # Disabled: it only lends its SMTP server to users' mail (operators hear nothing here).
        notifiers.append(
            {
                "name": "ops-mail",
                "plugin": "email",
                "on": ["failed"],
                "enabled": False,
                "options": {"urls": [smtp.url()]},
            }
        )
        section.setdefault("email_notifier", "ops-mail")
    return Settings.model_validate(
        {
            "storage": {"path": str(tmp_path / "data")},
            "autointel": {"allow_private_networks": allow_private},
            "fanout": fast_fanout(tmp_path),
            "user_notifications": section,
            "notifiers": notifiers,
        }
    )


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[UserSettingsStore]:
    """The SQLite settings store, as the bot opens it."""
    store = await open_user_settings(StorageSettings(path=tmp_path / "data"))
    yield store
    await store.close()


@pytest.fixture
def storage_on_each_backend(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> StorageSettings:
    """Where the settings store is on SQLite and on PostgreSQL (a database of this test's own),
    for tests that open it themselves (and open it again)."""
    if backend == "sqlite":
        return StorageSettings(path=tmp_path / "data")
    dsn: str = request.getfixturevalue("postgres_dsn")
    return StorageSettings.model_validate(
        {"path": str(tmp_path / "data"), "backend": "postgres", "postgres_dsn": dsn}
    )


@pytest.fixture
async def users_on_each_backend(
    storage_on_each_backend: StorageSettings,
) -> AsyncIterator[UserSettingsStore]:
    """The settings store on SQLite and on PostgreSQL, opened."""
    store = await open_user_settings(storage_on_each_backend)
    yield store
    await store.close()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Everything logged through loguru during the test, unredacted by any patcher."""
    lines: list[str] = []
    handler = logger.add(lambda m: lines.append(str(m)), level="TRACE", format="{level} {message}")
    try:
        yield lines
    finally:
        logger.remove(handler)
