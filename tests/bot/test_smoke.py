"""The bot connects, registers its commands and runs a workflow end to end."""

from __future__ import annotations

from notifier.app import NotifierBot
from notifier.records import WorkflowStatus
from notifier.testing import DiscordEmulator
from notifier.testing.site import DemoSite


async def test_bot_registers_its_commands(emulator: DiscordEmulator, bot: NotifierBot) -> None:
    names = {c.name for c in emulator.commands}
    assert {"autointel", "workflow", "retrieve_results", "results", "notifier"} <= names


async def test_autointel_quick_delivers_the_result(
    emulator: DiscordEmulator, bot: NotifierBot, site: DemoSite, captured_logs: list[str]
) -> None:
    handle = await emulator.trigger_command(
        "autointel", {"url": site.url, "depth": "quick"}, user="alice"
    )
    await handle.wait_for_response()
    assert handle.deferred
    result = await handle.wait_for_message(
        lambda m: (
            any("Resilience Handbook" in str(e) for e in m.embeds) and m.followup_index > 0
            if hasattr(m, "followup_index")
            else any("Resilience Handbook" in str(e) for e in m.embeds)
        ),
        timeout_s=20,
    )
    assert result is not None
    records = [r async for r in _all(bot)]
    assert records and records[0].status is WorkflowStatus.COMPLETED


async def _all(bot: NotifierBot):  # type: ignore[no-untyped-def]
    from notifier.store import ResultQuery

    for record in await bot.store.search(ResultQuery(user_id=None)):
        yield record
