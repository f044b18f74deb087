"""DM notices through the bot's `send_dm` (a recording stand-in here)."""

from __future__ import annotations

from pathlib import Path

from notifier.discord import codes as discord_codes
from notifier.events import Event
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext

from .support import DiscordHTTPError, DMRecorder, make_notice, make_settings, open_fanout, settled


async def test_dm_reaches_the_requester_and_configured_users(
    tmp_path: Path, context: PluginContext, dms: DMRecorder
) -> None:
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "tell",
                "plugin": "dm",
                "on": ["completed"],
                "options": {"to_requester": True, "user_ids": [222, 111]},
                "templates": {
                    "completed": {"title": "Your {command} is done", "body": "{summary}"}
                },
            }
        ],
    )
    notice = make_notice(Event.COMPLETED, user_id=111, summary="3 pages analysed")
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(notice)
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.SENT
    assert sorted(user for user, _, _ in dms.sent) == [111, 222]  # 111 once, though named twice
    _, content, embed = dms.to(111)[0]
    assert content == "Your autointel is done"
    assert embed is not None
    assert embed["description"] == "3 pages analysed"


async def test_a_user_who_cannot_be_dmed_fails_alone_and_a_flaky_one_is_retried(
    tmp_path: Path, context: PluginContext, dms: DMRecorder
) -> None:
    dms.fail_always[333] = DiscordHTTPError(
        403, discord_codes.CANNOT_DM_USER, "Cannot send messages to this user"
    )
    dms.fail_next[444] = [RuntimeError("gateway hiccup")]  # once, then delivered
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "tell",
                "plugin": "dm",
                "on": ["failed"],
                "options": {"to_requester": True, "user_ids": [333, 444]},
            }
        ],
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.FAILED, user_id=111, error="boom"))
        (row,) = await settled(fanout, 1)
    assert len(dms.to(111)) == 1  # delivered on the first attempt, skipped on the retry
    assert len(dms.to(444)) == 1  # delivered on the retry
    assert dms.to(333) == []
    assert row.status is OutboxStatus.FAILED  # 333 can never be reached
    assert row.attempts == 2
    assert row.last_error is not None
    assert "dm:333" in row.last_error
    assert "delivered to the other targets" in row.last_error
    assert row.targets["dm:333"]["permanent"] is True
    assert row.targets["dm:444"]["status"] == "sent"
    # Every call carried a Discord nonce: the same for a user on every attempt, never shared.
    nonces = {user: {n for u, n in dms.nonces if u == user} for user, _ in dms.nonces}
    assert all(len(found) == 1 for found in nonces.values())
    assert len({next(iter(found)) for found in nonces.values()}) == 3
    assert all(n is not None and len(n) <= 25 for _, n in dms.nonces)
    assert len([u for u, _ in dms.nonces if u == 444]) == 2  # failed once, then sent
