"""Helpers for the bot tests: an /autointel run with a body the test steers, taken to its settled
record (outlasting its interaction token when asked). The outbox rows a run left, settled, are
`notifier.testing.project_bot.settled_rows`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifier.app import NotifierBot
from notifier.records import WorkflowRecord
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator
from notifier.testing.project_bot import SteeredWorkflow, new_record, settled_record


async def run_steered(
    emulator: DiscordEmulator,
    bot: NotifierBot,
    *,
    user: str = "alice",
    options: Mapping[str, Any] | None = None,
    outlast_token: bool = False,
) -> WorkflowRecord:
    """Start /autointel with a steered body, let it finish, and return its stored record once its
    delivery is decided. With `outlast_token` the body finishes only after its interaction token
    died: the bot hands off while the token lives ("Still working"), then Discord kills it."""
    steered = SteeredWorkflow()
    steered.install(bot)
    known = {r.workflow_id for r in await bot.store.search(ResultQuery())}
    handle = await emulator.trigger_command(
        "autointel", {"url": "http://x/", **(options or {})}, user=user
    )
    await steered.started.wait()
    if outlast_token:
        await handle.wait_for_message(lambda m: "Still working" in m.content, timeout_s=10)
        handle.expire()
    steered.release.set()
    record = await new_record(bot, known)
    return await settled_record(bot, record.workflow_id)
