"""Helpers for the fanout tests: a recording `send_dm`, settings and notice builders, and the outbox
settling (HTTP sinks and waits: `notifier.testing`; the SMTP server: `notifier.testing.smtp`)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notifier.config import Settings
from notifier.events import Event, Notice
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxRow, OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, wait_until
from notifier.testing.fanout_settings import fast_fanout

WEBHOOK_ID = "112233445566778899"
WEBHOOK_TOKEN = "wHk-T0ken_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"


# ---------------------------------------------------------------------------------------------
# DMs, context, settings, notices


@dataclass
class DMRecorder:
    """A stand-in for the bot's send_dm that records DMs. `fail_always[user_id]` is raised on every
    call for that user; `fail_next[user_id]` is consumed one exception per call, then DMs work."""

    sent: list[tuple[int, str, dict[str, Any] | None]] = field(default_factory=list)
    fail_always: dict[int, BaseException] = field(default_factory=dict)
    fail_next: dict[int, list[BaseException]] = field(default_factory=dict)
    nonces: list[tuple[int, str | None]] = field(default_factory=list)

    async def __call__(
        self, user_id: int, content: str, embed: dict[str, Any] | None, nonce: str | None = None
    ) -> None:
        self.nonces.append((user_id, nonce))
        if user_id in self.fail_always:
            raise self.fail_always[user_id]
        queue = self.fail_next.get(user_id)
        if queue:
            raise queue.pop(0)
        self.sent.append((user_id, content, embed))

    def to(self, user_id: int) -> list[tuple[int, str, dict[str, Any] | None]]:
        return [dm for dm in self.sent if dm[0] == user_id]


class DiscordHTTPError(Exception):
    """Shaped like nextcord.HTTPException: `status` and Discord's JSON `code`."""

    def __init__(self, status: int, code: int, text: str) -> None:
        super().__init__(f"{status} ({code}): {text}")
        self.status = status
        self.code = code


def with_api_base(context: PluginContext, sink: HttpSink) -> PluginContext:
    """The context with Discord's API base at `sink` (webhook posts land there)."""
    return dataclasses.replace(context, discord_api_base=sink.api_base)


def make_settings(tmp_path: Path, notifiers: list[dict[str, Any]], **fanout: Any) -> Settings:
    """Settings with fast retries, an outbox in tmp_path, and only the built-in plugins unless
    `plugin_dirs` is given."""
    return Settings.model_validate(
        {
            "storage": {"path": str(tmp_path / "data")},
            "fanout": fast_fanout(tmp_path, **fanout),
            "notifiers": notifiers,
        }
    )


def make_notice(event: Event = Event.COMPLETED, **fields: Any) -> Notice:
    values: dict[str, Any] = {
        "workflow_id": uuid.uuid4().hex,
        "user_id": 111,
        "user_name": "alice",
        "command": "autointel",
        "guild_id": 42,
        "channel_id": 4242,
        "options": {"url": "https://example.org", "depth": "deep"},
        "summary": "3 pages analysed",
        "duration_s": 754.0,
    }
    values.update(fields)
    return Notice(event=event, **values)


@asynccontextmanager
async def open_fanout(
    settings: Settings, context: PluginContext, **kwargs: Any
) -> AsyncIterator[Fanout]:
    fanout = await Fanout.open(settings, context, **kwargs)
    try:
        yield fanout
    finally:
        await fanout.close(drain_timeout_s=0.5)


async def rows_of(fanout: Fanout, notifier: str | None = None) -> list[OutboxRow]:
    return await fanout.outbox.rows(notifier=notifier, limit=None)


async def settled(fanout: Fanout, count: int | None = None) -> list[OutboxRow]:
    """Wait until no row is pending (and there are `count` rows, if given); return them."""

    async def done() -> bool:
        rows = await rows_of(fanout)
        return (count is None or len(rows) == count) and all(
            r.status is not OutboxStatus.PENDING for r in rows
        )

    await wait_until(done, what="every outbox row settled")
    return await rows_of(fanout)


# ---------------------------------------------------------------------------------------------
# A plugin file of the operator's own

# The README's example plugin (it answers `sent` without sending): a plugin from `plugin_dirs`,
# and a close match for the misspelt `ntfy_topik`.
NTFY_PLUGIN = """
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from notifier.events import Event, Notice
from notifier.plugins import Plugin, RenderedNotice, SendOutcome


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str


class NtfyTopic(Plugin[Options]):
    name: ClassVar[str] = "ntfy_topic"
    events: ClassVar[frozenset[Event]] = frozenset({Event.COMPLETED, Event.FAILED})
    Options: ClassVar[type[BaseModel]] = Options

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        return SendOutcome.sent()
"""
