"""The `kill -9` column: a real bot process (`steered_bot.py`, production start-up) is killed with
SIGKILL at the stage; then a new bot starts on the same data directory, in this process, so its
recovery is observed like any other cell (captured logs, metrics, /retrieve_results, the CLI).

Where the victim dies, per stage:
- start: the workflow is stored as running and its body has begun;
- progress: a progress report is showing on the interaction;
- handoff: the hand-off message is posted (a 3 s token);
- final / error: the result (or the failure) is on disk, its delivery is in flight (the emulator
  holds the request: it never answers);
- fanout: the result is delivered, the ops sink is holding the `completed` notice unanswered.

The restarted bot must mark a workflow left running as interrupted and tell its user (no token
any more: the channel), deliver a stored result nobody received, and send every notice still
pending in the outbox.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.config import Settings
from notifier.fanout.outbox import OutboxStatus
from notifier.records import DeliveryState, WorkflowStatus
from notifier.testing import DiscordEmulator, bot_process, text_of, wait_until
from notifier.testing.project_bot import bot_settings, running_bot

from .cell import USER, WAIT_S, CellRun, assert_cell_outcome, open_cell
from .faults import Fault
from .harness import PROJECT_ROOT, LogCapture, MetricSnapshot, run_cli

__all__ = ["run_kill9_cell"]

INTERRUPTED_TOLD = "was interrupted"
INTERRUPTED_STORED = "the bot stopped while this workflow ran"
_FOLLOWUP = r"^/webhooks/\d+/{token}$"
STEERED_BOT = PROJECT_ROOT / "tests" / "reliability" / "steered_bot.py"


class Kill9(Fault):
    """Placeholder in the fault table: the column is driven by `run_kill9_cell`."""

    name = "kill9"


def _victim_config(run: CellRun, settings: Settings) -> Path:
    """The same settings as the restarted bot, as a config file (the token from the environment)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    data["discord"]["token"] = "${TEST_BOT_TOKEN}"
    data["logging"]["level"] = "INFO"
    path = run.tmp_path / "victim.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def _cli_delivery(run: CellRun) -> str:
    """The delivery state the victim recorded, read from disk by the operator CLI."""
    cli = await run_cli(run.cli_config(), "results", "show", run.workflow_id)
    match = re.search(r"^delivery\s+(\w+)", cli.stdout, re.M)
    return match.group(1) if match else ""


async def _workflow_id_from_disk(run: CellRun) -> str:
    found: list[str] = []

    async def appeared() -> bool:
        cli = await run_cli(run.cli_config(), "results", "list")
        found[:] = re.findall(r"^([0-9a-f]{32})\s", cli.stdout, re.M)
        return bool(found)

    await wait_until(appeared, timeout_s=WAIT_S, interval_s=0.2)
    assert len(found) == 1, found
    return found[0]


async def run_kill9_cell(
    stage: str,
    emulator: DiscordEmulator,
    tmp_path: Path,
    logs: LogCapture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    async with open_cell(stage, "kill9", emulator, tmp_path, logs) as run:
        settings = bot_settings(emulator, run.data_dir, run.settings_dict())
        control = tmp_path / "control"
        control.mkdir()
        await _kill_at_stage(run, settings, control)
        await _restart_and_check(run, settings, capfd)


async def _kill_at_stage(run: CellRun, settings: Settings, control: Path) -> None:
    emulator = run.emulator
    stage = run.stage
    config = _victim_config(run, settings)
    async with bot_process(
        config, emulator, script=STEERED_BOT, args=("--control", str(control))
    ) as victim:
        run.handle = handle = await emulator.trigger_command(
            "autointel", {"url": "http://127.0.0.1/"}, user=USER
        )
        await wait_until(lambda: (control / "started").exists(), timeout_s=WAIT_S)
        run.workflow_id = await _workflow_id_from_disk(run)
        if stage == "progress":
            (control / "report").touch()
            await handle.wait_for_message(lambda m: "crunching" in text_of(m), timeout_s=WAIT_S)
            # ... and recorded in the index (just after the edit): the restart will show it.
            await wait_until(
                lambda: _cli_shows(run, r"^stage\s+crunching"), timeout_s=WAIT_S, interval_s=0.2
            )
        elif stage == "handoff":
            await handle.wait_for_message(lambda m: "Still working" in m.content, timeout_s=WAIT_S)
        elif stage in ("final", "error"):
            # Its delivery never gets an answer: the victim dies with the call in flight.
            route = re.compile(_FOLLOWUP.format(token=re.escape(handle.token)))
            emulator.inject_fault("POST", route, "hang", count=1)
            (control / ("fail" if stage == "error" else "release")).touch()
            await wait_until(
                lambda: any(r.fault == "hang" and route.search(r.path) for r in emulator.requests),
                timeout_s=WAIT_S,
            )
            document = run.data_dir / "results" / f"{run.workflow_id}.json"
            assert document.exists(), "write-ahead: the result is on disk before any delivery"
        elif stage == "fanout":
            run.ops.holding = True
            (control / "release").touch()
            await handle.wait_for_message(
                lambda m: "Steered result" in text_of(m), timeout_s=WAIT_S
            )
            # The victim recorded the delivery, and the sink holds the `completed` notice.
            await wait_until(
                lambda: _cli_delivery_is(run, "delivered"), timeout_s=WAIT_S, interval_s=0.2
            )
            await wait_until(lambda: run.ops.held > 0, timeout_s=WAIT_S)
        await victim.kill_9()
    emulator.clear_faults()
    victim_log = victim.stderr_text()
    assert "Traceback" not in victim_log, victim_log[-3000:]
    run.notes["victim_log"] = victim_log


async def _cli_delivery_is(run: CellRun, state: str) -> bool:
    return await _cli_delivery(run) == state


async def _cli_shows(run: CellRun, pattern: str) -> bool:
    cli = await run_cli(run.cli_config(), "results", "show", run.workflow_id)
    return re.search(pattern, cli.stdout, re.M) is not None


async def _restart_and_check(
    run: CellRun, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    stage = run.stage
    if stage in ("start", "progress", "handoff"):
        run.status_override = WorkflowStatus.INTERRUPTED
        run.told_override = INTERRUPTED_TOLD
        run.stored_override = INTERRUPTED_STORED
        run.expected_rungs = {"channel"}  # the token died with the process
        run.metrics = [
            ("notifier_workflow_results_persisted_total", {"reason": "interrupted"}),
            ("notifier_workflow_delivery_total", {"rung": "channel"}),
        ]
    elif stage in ("final", "error"):
        if stage == "error":
            run.steered.fail_with = "the analysed site went away mid-run"
        run.expected_rungs = {"channel"}
        run.metrics = [("notifier_workflow_delivery_total", {"rung": "channel"})]
    else:  # fanout: the notice left pending by the dead process goes out now
        run.expected_rungs = {"interaction"}
        run.metrics = [
            ("notifier_notifications_sent_total", {"plugin": "apprise", "outcome": "sent"})
        ]
    run.before = MetricSnapshot.take()
    seen_before = len(run.ops.received)
    run.ops.release()
    async with running_bot(run.emulator, settings) as bot:
        run.bot = bot
        await asyncio.wait_for(bot.recovered.wait(), WAIT_S)
        await wait_until(lambda: _settled(run), timeout_s=WAIT_S)
        if stage == "fanout":
            row = await run.wait_row("completed", status=OutboxStatus.SENT)
            assert row.attempts >= 1
            resent = [
                r for r in run.ops.received[seen_before:] if r.title == "Completed: autointel"
            ]
            assert resent, "the pending notice was not sent after the restart"
        if stage in ("start", "progress", "handoff"):
            await run.wait_row("interrupted", status=OutboxStatus.SENT)
            if stage == "progress":
                document = await bot.store.read_result(run.workflow_id)
                assert document["result"]["last_stage"] == "crunching"
        await assert_cell_outcome(run, Kill9(), capfd)
        record = await run.record()
        assert record.delivered_via in run.expected_rungs


async def _settled(run: CellRun) -> bool:
    record = await run.require_bot().store.get(run.workflow_id)
    return record is not None and record.delivery_state is DeliveryState.DELIVERED
