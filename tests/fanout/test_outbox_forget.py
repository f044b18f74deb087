"""`Outbox.forget_user` (``/notify forget``): every queued or past notice naming the user leaves the
outbox, on both backends (the SQLite file and a fresh PostgreSQL database, opened as the bot opens
them: `open_outbox`), and a send that was in flight when it went records its outcome into nothing
instead of failing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from notifier.config import Settings
from notifier.events import Event
from notifier.fanout.outbox import NewNotice, Outbox, OutboxStatus, open_outbox

from .support import make_notice

ALICE, BOB = 123_456_789_012_345_678, 987_654_321_098_765_432  # snowflakes past 2**53


@pytest.fixture(params=["sqlite", "postgres"])
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outbox]:
    storage: dict[str, str] = {"path": str(tmp_path / "data")}
    if request.param == "postgres":
        storage |= {"backend": "postgres", "postgres_dsn": request.getfixturevalue("postgres_dsn")}
    settings = Settings.model_validate({"storage": storage, "fanout": {"plugin_dirs": []}})
    opened = await open_outbox(settings)
    try:
        yield opened
    finally:
        await opened.close()


def pending_gauge() -> float:
    value = REGISTRY.get_sample_value("notifier_outbox_pending")
    assert value is not None
    return value


def owed(user_id: int, *notifiers: str, event: Event = Event.COMPLETED) -> list[NewNotice]:
    notice = make_notice(event, user_id=user_id)
    return [NewNotice(name, "apprise", notice) for name in notifiers]


async def test_every_notice_naming_the_user_goes_and_no_other(outbox: Outbox) -> None:
    pending = await outbox.enqueue(owed(ALICE, "ops", "user:email"), now_s=100.0)
    sent, failed = await outbox.enqueue(owed(ALICE, "ops", "dev", event=Event.FAILED), now_s=101.0)
    (bobs,) = await outbox.enqueue(owed(BOB, "ops"), now_s=102.0)
    await outbox.mark_sent(sent.id, attempts=1, targets={}, now_s=103.0)
    await outbox.mark_failed(failed.id, attempts=3, error="HTTP 400", now_s=103.0)
    gauge_before = pending_gauge()

    forgotten = await outbox.forget_user(ALICE)

    assert forgotten == 4
    assert [r.id for r in await outbox.rows(limit=None)] == [bobs.id]
    assert [await outbox.get(r.id) for r in (*pending, sent, failed)] == [None] * 4
    assert gauge_before - pending_gauge() == 2  # the two that were still owed
    assert await outbox.forget_user(ALICE) == 0


async def test_a_send_that_ends_after_the_forget_changes_nothing(outbox: Outbox) -> None:
    # Rows handed to send tasks (in PostgreSQL, claimed by this outbox), then forgotten mid-send.
    first, second, third, fourth = await outbox.enqueue(
        owed(ALICE, "a", "b", "c", "d"), now_s=100.0
    )
    assert await outbox.forget_user(ALICE) == 4
    gauge_after_forget = pending_gauge()

    await outbox.mark_sent(first.id, attempts=1, targets={}, now_s=101.0)
    await outbox.mark_skipped(
        second.id, attempts=1, reason="nothing to say", targets={}, now_s=101.0
    )
    await outbox.mark_retry(
        third.id, attempts=1, error="HTTP 503", next_attempt_at=110.0, targets={}, now_s=101.0
    )
    await outbox.mark_failed(fourth.id, attempts=1, error="HTTP 400", now_s=101.0)

    assert await outbox.rows(limit=None) == []
    assert await outbox.count(OutboxStatus.PENDING) == 0
    assert await outbox.due(now_s=1_000.0) == []
    assert pending_gauge() == gauge_after_forget
