"""The project's own bot, run against the emulator: settings, start-up and a clean stop, a
workflow body the test steers, and the workflow rows the bot stores (waited for, or made).

Used by the `bot` pytest fixture, by the tests and by the demo (`bot.py` without a token).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import DeliveryState, WorkflowRecord, WorkflowStatus, new_workflow_id
from ..workflows import ReportProgress, WorkflowFailed, WorkflowSpec
from .emulator import DiscordEmulator
from .nextcord_support import connect_client
from .polling import wait_until

if TYPE_CHECKING:
    from collections.abc import Collection

    from ..app import NotifierBot
    from ..config import Settings
    from ..fanout.outbox import OutboxRow
    from ..store import ResultStore

__all__ = [
    "SteeredWorkflow",
    "bot_settings",
    "new_record",
    "outbox_rows",
    "project_bot",
    "running_bot",
    "settled_record",
    "settled_rows",
    "stored_workflow",
]

RECOVERY_LIMIT_S = 30.0  # only stops a broken start-up from hanging a test

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def bot_settings(
    emulator: DiscordEmulator, data_dir: Path, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings for a bot talking to `emulator`, storing under `data_dir`.

    The interaction TTL follows the emulator's; hand-off and safety margins shrink with it so a
    test with a TTL of a few seconds still exercises the whole ladder.
    """
    from ..config import Settings

    ttl_s = emulator.config.interaction_ttl_s
    base: dict[str, Any] = {
        "discord": {
            "token": emulator.bot_token,
            "api_base": emulator.api_base,
            "interaction_ttl": ttl_s,
            "handoff_before": min(60.0, ttl_s * 0.3),
            "safety_margin": min(5.0, ttl_s * 0.1),
            "admin_role_ids": [emulator.roles["admin"].id] if "admin" in emulator.roles else [],
        },
        "storage": {"path": str(data_dir)},
        "progress": {"min_interval": 0.2},
        "autointel": {"allow_private_networks": True},
        "fanout": {"plugin_dirs": [str(PROJECT_ROOT / "plugins")], "backoff_initial": 0.2},
        "runner": {"shutdown_grace": 5.0},
    }
    return Settings.model_validate(_merge(base, overrides or {}))


@contextlib.asynccontextmanager
async def running_bot(
    emulator: DiscordEmulator, settings: Settings, *, config_path: Path | None = None
) -> AsyncIterator[NotifierBot]:
    """Open the bot's services, connect it to the emulator, and close it all afterwards."""
    from ..app import NotifierBot

    bot = NotifierBot(settings, config_path=config_path, guild_ready_timeout_s=0.05)
    await bot.open()
    try:
        async with await connect_client(bot, emulator):
            yield bot
    finally:
        if not bot.is_closed():
            await bot.close()


@contextlib.asynccontextmanager
async def project_bot(
    emulator: DiscordEmulator,
    data_dir: Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    config_path: Path | None = None,
) -> AsyncIterator[NotifierBot]:
    """`running_bot` with config overrides known only at run time (sink ports, webhook tokens),
    entered once the bot's start-up recovery is done (`bot.recovered`)."""
    settings = bot_settings(emulator, data_dir, overrides)
    async with running_bot(emulator, settings, config_path=config_path) as bot:
        await asyncio.wait_for(bot.recovered.wait(), RECOVERY_LIMIT_S)
        yield bot


class SteeredWorkflow:
    """Stands in for /autointel's body: the test decides when it reports, finishes or fails.

    `run` reports "working", sets `started`, then waits for `release` (meanwhile reporting
    `reports_per_second` times a second, if set); it then raises `crash_with` (any exception, a
    bug in the body), or fails with `fail_with` (WorkflowFailed), or returns `result`. `report` is
    the runner's progress callback, for a test that reports by hand.
    """

    def __init__(self, result: dict[str, Any] | None = None) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_with: str | None = None
        self.crash_with: BaseException | None = None
        self.result: dict[str, Any] = result or {
            "url": "http://127.0.0.1/",
            "title": "Steered result",
            "summary": "A result the test controlled.",
            "pages_analysed": 3,
        }
        self.report: ReportProgress | None = None
        self.reports_per_second = 0.0

    async def validate(self, options: Mapping[str, str]) -> dict[str, str]:
        return {"url": options.get("url", ""), "depth": options.get("depth", "quick")}

    async def run(self, options: Mapping[str, str], report: ReportProgress) -> dict[str, Any]:
        self.report = report
        report(stage="working", progress=0.1)
        self.started.set()
        if self.reports_per_second:
            interval_s = 1.0 / self.reports_per_second
            step = 0
            while not self.release.is_set():
                step += 1
                report(stage="crunching", progress=min(0.99, step / 1000), detail=f"step {step}")
                await asyncio.sleep(interval_s)
        await self.release.wait()
        if self.crash_with is not None:
            raise self.crash_with
        if self.fail_with is not None:
            raise WorkflowFailed(self.fail_with)
        return dict(self.result)

    def install(self, bot: NotifierBot) -> None:
        """Make it the bot's /autointel body (for every run from now on)."""
        bot.workflows["autointel"] = WorkflowSpec(
            name="autointel",
            description="steered by a test",
            validate=self.validate,
            run=self.run,
        )


async def new_record(bot: NotifierBot, known: Collection[str] = ()) -> WorkflowRecord:
    """The one workflow row whose id is not in `known`, once the bot has stored it."""
    from ..store import ResultQuery

    found: list[WorkflowRecord] = []

    async def appeared() -> bool:
        found[:] = [r for r in await bot.store.search(ResultQuery()) if r.workflow_id not in known]
        return bool(found)

    await wait_until(appeared, what="a new workflow row")
    assert len(found) == 1, found
    return found[0]


async def settled_record(bot: NotifierBot, workflow_id: str) -> WorkflowRecord:
    """The workflow's row once its delivery is decided (delivered, or found undeliverable)."""
    settled: list[WorkflowRecord] = []

    async def decided() -> bool:
        record = await bot.store.get(workflow_id)
        if record is None or record.delivery_state is DeliveryState.PENDING:
            return False
        settled.append(record)
        return True

    await wait_until(decided, what=f"the delivery of workflow {workflow_id} decided")
    return settled[-1]


async def outbox_rows(bot: NotifierBot, notifier: str) -> list[OutboxRow]:
    """Every outbox row of `notifier`, oldest first."""
    return await bot.fanout.outbox.rows(notifier=notifier, limit=None)


async def settled_rows(bot: NotifierBot, notifier: str, count: int) -> list[OutboxRow]:
    """Wait until `notifier` has `count` rows and none of them is pending any more; all its rows."""
    from ..fanout.outbox import OutboxStatus

    async def settled() -> bool:
        rows = await outbox_rows(bot, notifier)
        return len(rows) >= count and all(r.status is not OutboxStatus.PENDING for r in rows)

    await wait_until(settled, what=f"{count} settled row(s) of {notifier}")
    return await outbox_rows(bot, notifier)


async def stored_workflow(
    store: ResultStore,
    emulator: DiscordEmulator,
    *,
    user: str = "alice",
    result: dict[str, Any] | None = None,
    status: WorkflowStatus = WorkflowStatus.COMPLETED,
    delivered_via: str | None = "interaction",
    url: str = "http://example.test/",
    ephemeral: bool = False,
    guild_id: int | None = None,
    created_at: float = 0.0,
) -> str:
    """An /autointel run by `user` in the emulator's `general` channel (of `guild_id`, default its
    guild), as the runner leaves it in `store`: created, then, unless `status` is RUNNING,
    finished with `result` and, with `delivered_via`, marked delivered on that rung. Returns its
    id. (`delivered_via=None`: a process persisted it and died before delivering it.)"""
    workflow_id = new_workflow_id()
    await store.create(
        WorkflowRecord(
            workflow_id=workflow_id,
            command="autointel",
            user_id=emulator.users[user].id,
            user_name=user,
            options={"url": url, "depth": "quick"},
            guild_id=emulator.guild_id if guild_id is None else guild_id,
            channel_id=emulator.channel_id,
            ephemeral=ephemeral,
            created_at=created_at,
        )
    )
    if status is WorkflowStatus.RUNNING:
        return workflow_id
    body = {"title": "Stored result", "summary": "Found three pages."} if result is None else result
    await store.finish(workflow_id, status=status, result=body)
    if delivered_via is not None:
        await store.mark_delivered(workflow_id, delivered_via)
    return workflow_id
