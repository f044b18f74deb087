"""README "Writing your own workflow": the example runs on its own, and as a slash command of the
real bot against the emulator, registered exactly as the README says."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from notifier.app import NotifierBot
from notifier.records import DeliveryState
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, connect_client, wait_until
from notifier.testing.project_bot import bot_settings
from notifier.workflows import WorkflowSpec

from .readme import Block, blocks


def _workflow_blocks() -> list[Block]:
    found = [b for b in blocks() if b.section == "Writing your own workflow" and b.lang == "python"]
    assert len(found) == 2, "the README shows the workflow, then how to register it"
    return found


def load_example() -> types.ModuleType:
    """Both README blocks, run in order in one fresh module (as one file would be)."""
    module = types.ModuleType("readme_count_workflow")
    for block in _workflow_blocks():
        exec(compile(block.text, f"README.md:{block.line}", "exec"), module.__dict__)
    return module


async def test_the_example_workflow_validates_reports_and_returns_its_result() -> None:
    module = load_example()
    spec = module.COUNT
    assert isinstance(spec, WorkflowSpec)
    assert spec.name == "count"
    options = await spec.validate({"n": "4"})
    assert options == {"n": "4"}
    assert await spec.validate({}) == {"n": "10"}
    reports: list[dict[str, Any]] = []

    def report(*, stage: str, progress: float, detail: str = "") -> None:
        reports.append({"stage": stage, "progress": progress, "detail": detail})

    result = await spec.run(options, report)
    assert result == {"summary": "counted to 4", "n": 4}
    assert [r["progress"] for r in reports] == [0.0, 0.25, 0.5, 0.75]
    assert reports[-1] == {"stage": "counting", "progress": 0.75, "detail": "3 of 4"}


async def test_the_example_runs_as_a_slash_command_of_the_real_bot(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    module = load_example()
    settings = bot_settings(emulator, tmp_path / "data")
    bot = NotifierBot(settings, guild_ready_timeout_s=0.05)
    await bot.open()
    try:
        module.add_count(bot)  # after open(), before the bot connects: as the README says
        async with await connect_client(bot, emulator):
            await emulator.wait_for_commands("count")
            handle = await emulator.trigger_command("count", {"n": 3}, user="alice")
            result = await handle.wait_for_message(
                lambda m: "counted to 3" in m.content + str(m.embeds), timeout_s=15
            )
            assert not result.ephemeral
            (record,) = await bot.store.search(ResultQuery(command="count"))
            assert record.options == {"n": "3"}
            document = await bot.store.read_result(record.workflow_id)
            assert document["result"] == {"summary": "counted to 3", "n": 3}

            async def delivered() -> bool:
                current = await bot.store.get(record.workflow_id)
                return current is not None and current.delivery_state is DeliveryState.DELIVERED

            await wait_until(delivered, what="the /count result marked delivered")

            # The stored result is retrievable like any other workflow's.
            again = await emulator.trigger_command(
                "retrieve_results", {"workflow_id": record.workflow_id}, user="alice"
            )
            shown = await again.wait_for_message(lambda m: bool(m.embeds), timeout_s=15)
            assert "counted to 3" in str(shown.embeds)
    finally:
        if not bot.is_closed():
            await bot.close()
