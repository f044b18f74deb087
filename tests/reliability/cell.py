"""One cell of the fault matrix: the real bot, one steered /autointel run, one fault at one stage.

`CellRun` holds everything a cell touches; `drive` walks the workflow through its stages and calls
the fault's `strike` at the chosen one; `assert_cell_outcome` is the common verdict:

1. the owner retrieves the result, with `/retrieve_results` through the emulator and with the
   operator CLI (`python -m notifier --config FILE results show ID`, a separate process);
2. the user was told on some rung (the interaction, a channel message that mentions them, a DM),
   or, when no rung could carry it, the fanout carried the notice with the retrieval command;
3. no traceback in the captured logs (loguru, stdlib logging, stderr), and no ERROR line the
   fault does not explain (each fault keeps an explicit allow-list);
4. the metrics moved: the write-ahead's `notifier_workflow_results_persisted_total{reason}` and the
   fault's own counters.

Across every cell, too: the interaction token is used at most once after it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from notifier.app import NotifierBot
from notifier.fanout.outbox import OutboxRow
from notifier.records import DeliveryState, WorkflowRecord, WorkflowStatus
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, HttpSink, text_of, wait_until
from notifier.testing.handle import InteractionHandle
from notifier.testing.model import Message
from notifier.testing.project_bot import SteeredWorkflow, bot_settings, running_bot

from .harness import LogCapture, MetricSnapshot, run_cli

if TYPE_CHECKING:
    from .faults import Fault

__all__ = ["STAGES", "CellRun", "assert_cell_outcome", "drive", "open_cell"]

STAGES = ("start", "progress", "handoff", "final", "error", "fanout")
USER = "alice"
ERROR_TEXT = "the analysed site went away mid-run"
# The ops notifier hears every event that matters to an operator, on a local json:// sink.
OPS_EVENTS = [
    "started",
    "handoff",
    "session_lost",
    "completed",
    "failed",
    "persisted",
    "interrupted",
    "storage_error",
]
# The interaction TTL of cells whose stage is the hand-off: the hand-off is due after about
# 60 % of it (handoff_before 30 %, safety margin 10 %; see `bot_settings`).
HANDOFF_TTL_S = 3.0
WAIT_S = 25.0


@dataclass
class CellRun:
    """Everything one cell touches; faults read and change it."""

    stage: str
    fault_name: str
    emulator: DiscordEmulator
    tmp_path: Path
    logs: LogCapture
    ops: HttpSink
    data_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    private: bool = False
    steered: SteeredWorkflow = field(default_factory=SteeredWorkflow)
    bot: NotifierBot | None = None
    handle: InteractionHandle | None = None
    workflow_id: str = ""
    before: MetricSnapshot | None = None
    # What the cell expects, filled by the fault's `configure`.
    expected_rungs: set[str] = field(default_factory=set)
    allowed_errors: list[str] = field(default_factory=list)
    metrics: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # When the status can not be shown anywhere (every rung refuses), this says the refusal
    # happened instead.
    status_refused: Callable[[], bool] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    # Overrides for cells whose workflow does not end by itself (kill -9: interrupted).
    status_override: WorkflowStatus | None = None
    told_override: str | None = None
    stored_override: str | None = None

    def __post_init__(self) -> None:
        if not self.expected_rungs:
            self.expected_rungs = {self.natural_rung}

    @property
    def natural_rung(self) -> str:
        """Where a healthy run delivers: the channel once the hand-off happened (a private
        workflow: by DM), else the interaction."""
        if self.stage != "handoff":
            return "interaction"
        return "dm" if self.private else "channel"

    # -- identity ---------------------------------------------------------------------------

    @property
    def user_id(self) -> int:
        return self.emulator.users[USER].id

    @property
    def failed(self) -> bool:
        return self.stage == "error"

    @property
    def expected_text(self) -> str:
        """What the delivered (and retrieved) result must show."""
        return self.steered.fail_with or str(self.steered.result.get("title", ""))

    @property
    def expected_status(self) -> WorkflowStatus:
        if self.status_override is not None:
            return self.status_override
        return WorkflowStatus.FAILED if self.failed else WorkflowStatus.COMPLETED

    @property
    def told_text(self) -> str:
        """What the message that told the user must show."""
        return (self.told_override or self.expected_text)[:60]

    @property
    def stored_text(self) -> str:
        """What /retrieve_results and the CLI must show."""
        return (self.stored_override or self.expected_text)[:60]

    def expect_persisted(self) -> None:
        """The write-ahead's counter must move (the result reached the disk in this process)."""
        reason = "failed" if self.failed else "completed"
        self.metrics.insert(0, ("notifier_workflow_results_persisted_total", {"reason": reason}))

    def require_bot(self) -> NotifierBot:
        assert self.bot is not None, "the bot is not running"
        return self.bot

    def require_handle(self) -> InteractionHandle:
        assert self.handle is not None, "the command was not triggered yet"
        return self.handle

    # -- configuration ----------------------------------------------------------------------

    def base_overrides(self) -> dict[str, Any]:
        return {
            "storage": {
                "path": str(self.data_dir),
                "write_retry_initial": 0.2,
                "write_retry_max": 0.5,
            },
            "fanout": {"max_attempts": 10, "backoff_initial": 0.2, "backoff_max": 0.8},
            "notifiers": [
                {
                    "name": "ops",
                    "plugin": "apprise",
                    "on": list(OPS_EVENTS),
                    "options": {"urls": [self.ops.json_url("/ops")]},
                }
            ],
        }

    def add_notifier(self, entry: dict[str, Any]) -> None:
        self.overrides["notifiers"].append(entry)

    def settings_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.overrides))

    def cli_config(self) -> Path:
        """A config file for the operator CLI pointing at this bot's storage."""
        path = self.tmp_path / "cli-config.yaml"
        path.write_text(yaml.safe_dump({"storage": {"path": str(self.data_dir)}}))
        return path

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[NotifierBot]:
        settings = bot_settings(self.emulator, self.data_dir, self.settings_dict())
        async with running_bot(self.emulator, settings) as bot:
            self.bot = bot
            await asyncio.wait_for(bot.recovered.wait(), 20.0)
            try:
                yield bot
            finally:
                self.bot = None

    # -- what users see ---------------------------------------------------------------------

    def surfaces(self) -> dict[str, list[Message]]:
        """Messages the user can see, by the rung that would have carried them."""
        handle = self.require_handle()
        mention = f"<@{self.user_id}>"
        channel = [
            m
            for m in self.emulator.channel_messages(self.emulator.channel_id)
            if m.interaction_id is None and not m.deleted and mention in m.content
        ]
        return {
            "interaction": [m for m in handle.messages if not m.deleted and not m.loading],
            "channel": channel,
            "dm": [m for m in self.emulator.dm_messages(USER) if not m.deleted],
        }

    def shown(self, *needles: str) -> Message | None:
        for messages in self.surfaces().values():
            for message in messages:
                text = text_of(message)
                if all(n in text for n in needles):
                    return message
        # A channel status message names the workflow, not always the user.
        for message in self.emulator.channel_messages(self.emulator.channel_id):
            if message.interaction_id is None and all(n in text_of(message) for n in needles):
                return message
        return None

    async def wait_shown(self, *needles: str) -> None:
        refused = self.status_refused

        def done() -> bool:
            return self.shown(*needles) is not None or (refused is not None and refused())

        await wait_until(done, timeout_s=WAIT_S)

    def token_calls_with_code(self, code: int) -> list[Any]:
        """The bot's calls with this interaction's token answered `code` (the bot never reads a
        webhook message back: GETs are other traffic, such as the 429 storm's competitor)."""
        token = self.require_handle().token
        return [
            r
            for r in self.emulator.requests
            if r.error_code == code and token in r.path and r.method != "GET"
        ]

    # -- the bot's books --------------------------------------------------------------------

    async def record(self) -> WorkflowRecord:
        record = await self.require_bot().store.get(self.workflow_id)
        assert record is not None, f"workflow {self.workflow_id} is unknown to the store"
        return record

    async def rows(self, notifier: str = "ops") -> list[OutboxRow]:
        rows = await self.require_bot().fanout.outbox.rows(notifier=notifier, limit=None)
        return [r for r in rows if r.workflow_id == self.workflow_id]

    async def row_for(self, event: str, notifier: str = "ops") -> OutboxRow | None:
        for row in await self.rows(notifier):
            if row.event.value == event:
                return row
        return None

    async def wait_row(self, event: str, notifier: str = "ops", **where: Any) -> OutboxRow:
        found: list[OutboxRow] = []

        async def check() -> bool:
            row = await self.row_for(event, notifier)
            if row is None or any(getattr(row, k) != v for k, v in where.items()):
                return False
            found.append(row)
            return True

        await wait_until(check, timeout_s=WAIT_S)
        return found[-1]


@contextlib.asynccontextmanager
async def open_cell(
    stage: str, fault_name: str, emulator: DiscordEmulator, tmp_path: Path, logs: LogCapture
) -> AsyncIterator[CellRun]:
    """One cell's run, its ops sink listening (and, for the hand-off stage, the short token
    lifetime set); afterwards the sink is closed and the cell's log kept (MATRIX_LOG_DIR)."""
    async with HttpSink() as ops:
        if stage == "handoff":
            emulator.config.interaction_ttl_s = HANDOFF_TTL_S
        run = CellRun(
            stage=stage,
            fault_name=fault_name,
            emulator=emulator,
            tmp_path=tmp_path,
            logs=logs,
            ops=ops,
            data_dir=tmp_path / "data",
        )
        run.overrides = run.base_overrides()
        try:
            yield run
        finally:
            logs.dump_to_env_dir(f"{stage}-{fault_name}")


# ---------------------------------------------------------------------------------------------
# Driving one workflow through its stages


async def _new_workflow_id(bot: NotifierBot) -> str:
    """The id of the one workflow of the cell: from the index, or (when the index could not take
    its row, on a full disk) from its `started` notice in the outbox."""
    found: set[str] = set()

    async def appeared() -> bool:
        found.update(r.workflow_id for r in await bot.store.search(ResultQuery()))
        rows = await bot.fanout.outbox.rows(notifier="ops", limit=None)
        found.update(r.workflow_id for r in rows if r.event.value == "started")
        return bool(found)

    await wait_until(appeared, timeout_s=WAIT_S)
    assert len(found) == 1, found
    return found.pop()


async def _finished(run: CellRun) -> bool:
    record = await run.require_bot().store.get(run.workflow_id)
    return record is not None and record.delivery_state is not DeliveryState.PENDING


async def drive(run: CellRun, fault: Fault) -> None:
    """Start /autointel, walk it through the stages, strike at `run.stage`, let it finish."""
    bot = run.require_bot()
    emulator = run.emulator
    steered = run.steered
    if run.failed:
        steered.fail_with = steered.fail_with or ERROR_TEXT
    steered.install(bot)
    run.before = MetricSnapshot.take()

    strike_at_start_late = run.stage == "start" and fault.strike_after_defer
    if run.stage == "start" and not fault.strike_after_defer:
        await fault.strike(run)
    run.handle = await emulator.trigger_command(
        "autointel", {"url": "http://127.0.0.1/", "private": run.private}, user=USER
    )
    await run.handle.wait_for_response(timeout_s=WAIT_S)
    if strike_at_start_late:
        await fault.strike(run)
    await wait_until(steered.started.is_set, timeout_s=WAIT_S)
    run.workflow_id = await _new_workflow_id(bot)
    await run.wait_shown(run.workflow_id)  # the first status (or its refusal)

    if run.stage == "progress":
        await fault.strike(run)
        assert steered.report is not None
        steered.report(stage="crunching", progress=0.5, detail="halfway through the matrix")
        await run.wait_shown("crunching")
    elif run.stage == "handoff":
        # The cell is about the hand-off only if the fault is there before it happens.
        assert await run.row_for("handoff") is None, "the hand-off came before the fault"
        await fault.strike(run)
        await run.wait_row("handoff")  # the hand-off happened (its notice is queued)
    elif run.stage in ("final", "error", "fanout"):
        await fault.strike(run)

    steered.release.set()
    await wait_until(lambda: _finished(run), timeout_s=WAIT_S)
    await fault.after_delivery(run)


# ---------------------------------------------------------------------------------------------
# The verdict


async def retrieve(run: CellRun) -> Message:
    """`/retrieve_results` by the owner, through the emulator."""
    handle = await run.emulator.trigger_command(
        "retrieve_results", {"workflow_id": run.workflow_id}, user=USER
    )
    return await handle.wait_for_message(timeout_s=WAIT_S)


async def _assert_told(run: CellRun, record: WorkflowRecord) -> None:
    expected = run.told_text
    if record.delivery_state is DeliveryState.DELIVERED:
        via = record.delivered_via or ""
        assert via in run.expected_rungs, f"delivered via {via!r}, expected {run.expected_rungs}"
        carried = [m for m in run.surfaces()[via] if expected in text_of(m)]
        assert carried, f"the {via} rung shows no message with {expected!r}"
        if via == "channel":
            assert any(f"<@{run.user_id}>" in m.content for m in carried)
        return
    assert record.delivery_state is DeliveryState.UNDELIVERABLE, record.delivery_state
    assert "none" in run.expected_rungs, f"undeliverable, expected {run.expected_rungs}"
    retrieval = f"/retrieve_results workflow_id:{run.workflow_id}"

    def noticed() -> bool:  # the fanout sends it in the background, once the ladder gave up
        return any(
            str(b.get("title", "")).startswith("Result saved")
            and retrieval in str(b.get("message"))
            for b in run.ops.bodies(run.workflow_id)
        )

    try:
        await wait_until(noticed, timeout_s=WAIT_S)
    except TimeoutError:
        raise AssertionError(
            f"no rung carried the result and the fanout did not carry the notice: "
            f"{run.ops.received}"
        ) from None


async def assert_cell_outcome(
    run: CellRun, fault: Fault, capfd: pytest.CaptureFixture[str]
) -> None:
    record = await run.record()
    assert record.status is run.expected_status, record.status

    # (2) told on some rung, or the fanout carried the notice.
    await _assert_told(run, record)
    # Whatever the fault: a token known to be dead is never used again (Discord bans an IP after
    # 10,000 answers of 401/403/429): at most the one call that found it dead.
    dead = run.token_calls_with_code(50027)
    assert len(dead) <= 1, [f"{r.method} {r.path}" for r in dead]

    # (1a) /retrieve_results by its owner.
    message = await retrieve(run)
    shown = text_of(message)  # attachments included: a big result comes as files
    assert run.workflow_id in shown, shown[:500]
    assert run.stored_text in shown, shown[:500]
    await fault.before_cli(run)

    # (1b) the operator CLI, a separate process reading the store from disk.
    cli = await run_cli(run.cli_config(), "results", "show", run.workflow_id)
    assert cli.returncode == 0, cli.stderr
    assert run.workflow_id in cli.stdout
    assert run.stored_text in cli.stdout, cli.stdout[:800]
    assert "Traceback" not in cli.stderr

    await fault.check(run)

    # (3) no traceback, and no ERROR the fault does not explain.
    assert run.logs.tracebacks() == [], run.logs.tracebacks()[:2]
    unexpected = run.logs.unexpected_errors(run.allowed_errors)
    assert unexpected == [], unexpected[:5]
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]

    # (4) the metrics moved.
    after = MetricSnapshot.take()
    assert run.before is not None
    assert run.metrics, "a cell must name the metrics its fault moves"
    for name, labels in run.metrics:
        assert after.moved(run.before, name, **labels) > 0, f"{name}{labels} did not move"
    assert after.moved(run.before, "notifier_orphaned_results_retrieved_total", success="true") >= 1


def big_result(keys: int = 60) -> dict[str, Any]:
    """Too big for embeds (60 fields of 900 characters): drawn as files, or summarised."""
    return {
        "title": "Steered result",
        "summary": "A result too big for any embed.",
        **{f"key_{i:02d}": f"{i:02d}" + "x" * 898 for i in range(keys)},
    }


def codes_seen(run: CellRun) -> set[int]:
    return {r.error_code for r in run.emulator.requests if r.error_code}
