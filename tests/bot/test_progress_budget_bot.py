"""After a hand-off, progress goes through the bot token and shares one edit budget (Discord allows
a bot 50 requests/s): the real bot against the emulator, with a budget of one edit a minute."""

from __future__ import annotations

import asyncio

import pytest

from notifier.app import NotifierBot
from notifier.testing import DiscordEmulator, text_of, wait_until
from notifier.testing.project_bot import SteeredWorkflow

ONE_EDIT_A_MINUTE = [
    pytest.mark.discord_emulator(interaction_ttl_s=4.0),
    # min_interval 1 s keeps the two interactions well under the emulator's edit limits.
    pytest.mark.notifier_config(
        {"progress": {"bot_edits_per_second": 1 / 60, "min_interval": 1.0}}
    ),
]


def _status_messages(emulator: DiscordEmulator) -> list[str]:
    """Status messages the bot posted in the channel with its own token (not the interactions'
    own messages, which live in the channel too, and not the results)."""
    return [
        text_of(m)
        for m in emulator.channel_messages()
        if m.interaction_id is None
        and "Workflow id" in text_of(m)
        and "Steered result" not in text_of(m)
    ]


@ONE_EDIT_A_MINUTE[0]
@ONE_EDIT_A_MINUTE[1]
async def test_two_handed_off_workflows_share_the_budget_and_both_results_arrive(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    steered = SteeredWorkflow()
    steered.reports_per_second = 20
    steered.install(bot)
    first = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    second = await emulator.trigger_command("autointel", {"url": "http://y/"}, user="bob")
    for handle in (first, second):
        await handle.wait_for_message(lambda m: "Still working" in m.content, timeout_s=10)
    # Both report 20 times a second through the channel now; the budget allows one edit.
    await wait_until(lambda: len(_status_messages(emulator)) == 1, timeout_s=10)
    await asyncio.sleep(1.0)
    assert len(_status_messages(emulator)) == 1  # the other one is still waiting for a turn

    steered.release.set()

    # Long before the next turn (a minute): final states do not wait for the budget.
    await wait_until(lambda: len(_results(emulator)) >= 2, timeout_s=15)
    results = _results(emulator)
    statuses = _status_messages(emulator)
    assert len(results) == 2
    # The workflow that had a status message sees it finished; the one that never got one is
    # told by its result alone, not by a status posted first.
    assert len(statuses) == 1
    assert "finished" in statuses[0] and "100%" in statuses[0]


def _results(emulator: DiscordEmulator) -> list[str]:
    return [
        text_of(m)
        for m in emulator.channel_messages()
        if m.interaction_id is None and "Steered result" in text_of(m)
    ]
