"""A command's own bug is logged once and answered privately; it never leaves a spinner."""

from __future__ import annotations

import pytest

from notifier.app import NotifierBot
from notifier.testing import DiscordEmulator


async def test_a_failing_command_answers_privately_and_logs_the_bug(
    emulator: DiscordEmulator,
    bot: NotifierBot,
    captured_logs: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("index exploded")

    monkeypatch.setattr(bot.store, "count", broken)
    handle = await emulator.trigger_command("results", {}, user="alice")
    answer = await handle.wait_for_message(timeout_s=10)
    assert answer.ephemeral
    assert "Something went wrong" in answer.content
    assert "index exploded" not in answer.content  # internals stay in the log
    failures = [line for line in captured_logs if "command /results failed" in line]
    assert len(failures) == 1
    assert "index exploded" in failures[0]
