"""kill -9 of the bot process while notices are queued: the next start sends every one, once.

The bot runs as a real process (`python bot.py --config ...`) against the emulator, which runs on
this test's event loop: everything here awaits (subprocess, pipes, polling) so the emulator keeps
answering the bot.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from notifier.testing import DiscordEmulator, HttpSink, bot_process, text_of
from notifier.testing.site import DemoSite

from .support import config_with_ops, outbox_rows

# A limit that only stops a broken run from hanging the suite; nothing here measures speed.
STEP_LIMIT_S = 60.0


async def test_notices_queued_before_a_kill_9_are_sent_once_after_the_restart(
    discord_emulator: DiscordEmulator, tmp_path: Path
) -> None:
    emulator = discord_emulator
    data = tmp_path / "data"
    # While `holding`, the sink answers nothing (the client dies first); later, 200 at once.
    async with HttpSink(holding=True) as sink, DemoSite(pages=6) as site:
        config = config_with_ops(tmp_path, emulator, sink, ["started", "completed"])

        # 1. The first process: a workflow runs to the end, its notices hang at the sink.
        async with bot_process(config, emulator) as first:
            handle = await emulator.trigger_command(
                "autointel", {"url": site.url, "depth": "quick"}, user="alice"
            )
            await first.wait_until(lambda: sink.held == 2, what="both notices held by the sink")
            assert sorted(r.title for r in sink.received) == [
                "Completed: autointel",
                "Started: autointel",
            ]
            rows = await outbox_rows(data)
            assert sorted((r.event, r.status) for r in rows) == [
                ("completed", "pending"),
                ("started", "pending"),
            ]
            # The user got the result; only the notices are still owed.
            await handle.wait_for_message(
                lambda m: "Resilience Handbook" in text_of(m), timeout_s=STEP_LIMIT_S
            )
            await first.kill_9()

        held_keys = set(sink.keys())
        assert None not in held_keys
        assert len(held_keys) == 2
        assert not [r for r in sink.received if r.status is not None]  # none was answered
        # Killed mid-send: both rows are still owed, on disk.
        assert sorted(r.status for r in await outbox_rows(data)) == ["pending", "pending"]

        # 2. The sink recovers; the second process sends what the first one owed.
        sink.holding = False
        async with bot_process(config, emulator) as second:
            await second.wait_until(
                lambda: len(sink.bodies()) >= 2, what="the owed notices delivered"
            )

            async def all_sent() -> bool:
                rows = await outbox_rows(data)
                return len(rows) == 2 and all(r.status == "sent" for r in rows)

            await second.wait_until(all_sent, what="every outbox row marked sent")
            await second.stop()  # exit 0, no traceback, no token in the output
            assert second.stderr_has("signal received: shutting down gracefully")

    # Each owed notice arrived exactly once, with the key it was first sent with.
    counts = Counter(r.key for r in sink.received if r.ok)
    assert all(n == 1 for n in counts.values()), counts
    assert set(counts) == held_keys
    assert sorted(sink.titles()) == ["Completed: autointel", "Started: autointel"]
    final = await outbox_rows(data)
    assert {r.key for r in final} == held_keys
