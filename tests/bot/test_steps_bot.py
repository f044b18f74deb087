"""Recorded steps seen from Discord, with the real bot in this process: /workflow status lists
them, a step over `runner.max_step_bytes` fails the run naming the limit, and a resumed workflow
whose body calls other steps than it recorded fails instead of mixing recorded values."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import REGISTRY

from notifier.config import StorageSettings
from notifier.records import WorkflowRecord, WorkflowStatus, new_workflow_id
from notifier.store import ResultQuery, ResultStore
from notifier.testing import DiscordEmulator, every_message, text_of, wait_until
from notifier.testing.project_bot import new_record, project_bot, settled_record

STEPPED = """
import asyncio
from pathlib import Path

from notifier import Context, workflow

GATE = Path({gate!r})


async def value(text: str) -> str:
    return text


async def wait_for_gate() -> str:
    while not GATE.exists():
        await asyncio.sleep(0.05)
    return "through"


@workflow(description="Two steps, then one that waits for the test")
async def stepped(ctx: Context) -> dict:
    await ctx.step("fetch:0", value, "a")
    await ctx.step("fetch:1", value, "b")
    await ctx.step("gate", wait_for_gate)
    return {{"summary": "stepped through"}}


TICKS = Path({ticks!r})


async def tick(index: int) -> int:
    with TICKS.open("a") as ticks:
        ticks.write(f"started {{index}}\\n")
    await asyncio.sleep(0.5)
    return index


@workflow(description="Ticks forever, one step a tick")
async def ticking(ctx: Context) -> dict:
    for index in range(1000):
        await ctx.step(f"tick:{{index}}", tick, index)
    return {{"summary": "never"}}


@workflow(description="Returns more than a step may hold")
async def bulky(ctx: Context, size: int = 5000) -> dict:
    await ctx.step("bulk", value, "x" * size)
    return {{"summary": "never"}}


@workflow(description="Calls other steps on a replay")
async def shuffle(ctx: Context) -> dict:
    await ctx.step("page:0", value, "a")
    await ctx.step("page:5", value, "b")
    return {{"summary": "mixed"}}
"""


def _resumes_counted(outcome: str) -> float:
    sample = REGISTRY.get_sample_value("notifier_workflow_resumes_total", {"outcome": outcome})
    return sample or 0.0


def _workflows(tmp_path: Path, max_concurrent: int = 4) -> tuple[dict[str, object], Path]:
    folder = tmp_path / "workflows"
    folder.mkdir()
    gate = tmp_path / "gate"
    ticks = tmp_path / "ticks.txt"
    (folder / "stepped.py").write_text(STEPPED.format(gate=str(gate), ticks=str(ticks)))
    runner = {"max_step_bytes": 1000, "max_concurrent": max_concurrent}
    return {"workflows": {"dirs": [str(folder)]}, "runner": runner}, gate


async def _status_text(emulator: DiscordEmulator, workflow_id: str) -> str:
    handle = await emulator.trigger_command(
        "workflow", {"workflow_id": workflow_id}, subcommand="status", user="alice"
    )
    return text_of(await handle.wait_for_message(timeout_s=10))


async def test_workflow_status_lists_finished_steps_and_the_running_one(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    overrides, gate = _workflows(tmp_path)
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        await emulator.wait_for_commands("stepped")
        handle = await emulator.trigger_command("stepped", user="alice")
        record = await new_record(bot)

        async def two_recorded() -> bool:
            return len(await bot.store.steps(record.workflow_id)) == 2

        await wait_until(two_recorded, what="two steps recorded")
        shown = await _status_text(emulator, record.workflow_id)
        assert "2 finished: fetch:0, fetch:1" in shown, shown
        assert "running: gate" in shown, shown
        gate.touch()
        await handle.wait_for_message(lambda m: "stepped through" in text_of(m), timeout_s=15)
        await settled_record(bot, record.workflow_id)
        shown = await _status_text(emulator, record.workflow_id)
        assert "3 finished: fetch:0, fetch:1, gate" in shown, shown
        assert "running:" not in shown


async def test_a_step_over_the_size_limit_fails_the_run_naming_the_limit(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    overrides, _ = _workflows(tmp_path)
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        await emulator.wait_for_commands("bulky")
        handle = await emulator.trigger_command("bulky", {"size": 5000}, user="alice")
        message = await handle.wait_for_message(lambda m: "failed" in text_of(m), timeout_s=15)
        (record,) = [r for r in await bot.store.search(ResultQuery()) if r.command == "bulky"]
    assert record.status is WorkflowStatus.FAILED
    assert "step 'bulk' could not be recorded" in record.error
    assert "the limit is 1,000 (runner.max_step_bytes)" in record.error
    assert "runner.max_step_bytes" in text_of(message)


async def test_a_resumed_workflow_that_calls_other_steps_fails_with_a_clear_error(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    overrides, _ = _workflows(tmp_path)
    data = tmp_path / "data"
    # A dead process left /shuffle running after recording page:0 and page:1.
    store = await ResultStore.open(StorageSettings(path=data), maintain=False)
    try:
        workflow_id = new_workflow_id()
        await store.create(
            WorkflowRecord(
                workflow_id=workflow_id,
                command="shuffle",
                user_id=emulator.users["alice"].id,
                user_name="alice",
                options={},
                guild_id=emulator.guild_id,
                channel_id=emulator.channel_id,
                ephemeral=False,
                created_at=time.time() - 5,
            )
        )
        await store.record_step(workflow_id, 0, "page:0", "a")
        await store.record_step(workflow_id, 1, "page:1", "b")
    finally:
        await store.close()
    resumed_before = _resumes_counted("resumed")
    async with project_bot(emulator, data, overrides) as bot:
        record = await settled_record(bot, workflow_id)
    assert _resumes_counted("resumed") == resumed_before + 1
    assert record.resumes == 1
    assert record.status is WorkflowStatus.FAILED
    assert record.error == (
        "the workflow is not deterministic: step 1 was 'page:1' when recorded and is 'page:5' now"
    )
    told = [m for m in emulator.channel_messages() if record.error in text_of(m)]
    assert len(told) == 1


async def test_workflows_to_resume_wait_for_a_place_within_max_concurrent(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    overrides, gate = _workflows(tmp_path, max_concurrent=1)
    data = tmp_path / "data"
    # A dead process left two /stepped runs with two recorded steps each.
    store = await ResultStore.open(StorageSettings(path=data), maintain=False)
    ids = []
    try:
        for age_s in (20, 10):
            workflow_id = new_workflow_id()
            await store.create(
                WorkflowRecord(
                    workflow_id=workflow_id,
                    command="stepped",
                    user_id=emulator.users["alice"].id,
                    user_name="alice",
                    options={},
                    guild_id=emulator.guild_id,
                    channel_id=emulator.channel_id,
                    ephemeral=False,
                    created_at=time.time() - age_s,
                )
            )
            await store.record_step(workflow_id, 0, "fetch:0", "a")
            await store.record_step(workflow_id, 1, "fetch:1", "b")
            ids.append(workflow_id)
    finally:
        await store.close()
    older, newer = ids
    async with project_bot(emulator, data, overrides) as bot:
        assert bot.runner.is_running(older)
        assert not bot.runner.is_running(newer)
        waiting = await bot.store.get(newer)
        assert waiting is not None
        assert (waiting.status, waiting.resumes) == (WorkflowStatus.RUNNING, 0)
        gate.touch()  # the older one finishes; the newer one takes its place
        first, second = [await settled_record(bot, wid) for wid in ids]
    assert (first.status, first.resumes) == (WorkflowStatus.COMPLETED, 1)
    assert (second.status, second.resumes) == (WorkflowStatus.COMPLETED, 1)


async def test_a_shutdown_lets_the_running_step_finish_and_leaves_the_workflow_to_resume(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    overrides, _ = _workflows(tmp_path)
    ticks = tmp_path / "ticks.txt"
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        await emulator.wait_for_commands("ticking")
        await emulator.trigger_command("ticking", user="alice")
        record = await new_record(bot)
        await wait_until(
            lambda: ticks.exists() and "started 2" in ticks.read_text(), what="tick 2 running"
        )
    # The bot closed (as at SIGTERM) while tick 2 ran: tick 2 finished and was recorded, no
    # tick 3 was started, and the workflow is still running in the store, to resume.
    assert ticks.read_text().splitlines() == ["started 0", "started 1", "started 2"]
    store = await ResultStore.open(StorageSettings(path=tmp_path / "data"), maintain=False)
    try:
        steps = [step.name for step in await store.steps(record.workflow_id)]
        stored = await store.get(record.workflow_id)
    finally:
        await store.close()
    assert steps == ["tick:0", "tick:1", "tick:2"]
    assert stored is not None and stored.status is WorkflowStatus.RUNNING
    told = [text_of(m) for m in every_message(emulator) if "interrupted" in text_of(m)]
    assert told == []
