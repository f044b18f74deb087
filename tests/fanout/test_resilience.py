"""A notifier whose server refuses connections and one whose server hangs delay nothing else, are
retried, and end up reported in the outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import REGISTRY

from notifier.events import Event
from notifier.fanout.outbox import OutboxRow, OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, Received, free_port, wait_until

from .support import make_notice, make_settings, open_fanout, rows_of, settled


def counter(plugin: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "notifier_notifications_sent_total", {"plugin": plugin, "outcome": outcome}
    )
    return value or 0.0


async def test_refusing_and_hanging_sinks_delay_nothing_and_are_reported(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    good = await sinks()
    hanging = await sinks(holding=True)
    refused_port = free_port()  # nothing listens there
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "refused",
                "plugin": "apprise",
                "on": ["failed"],
                "options": {"urls": [f"json://127.0.0.1:{refused_port}/hook"]},
            },
            {
                "name": "hangs",
                "plugin": "apprise",
                "on": ["failed"],
                "options": {"urls": [hanging.json_url()]},
            },
            {
                "name": "good",
                "plugin": "apprise",
                "on": ["failed"],
                "options": {"urls": [good.json_url()]},
            },
        ],
        timeout=1.0,
        max_attempts=3,
        backoff_initial=0.3,
        backoff_max=0.6,
    )
    timeouts_before = counter("apprise", "timeout")
    failed_before = counter("apprise", "failed")

    async with open_fanout(settings, context) as fanout:
        seen_at_arrival: dict[str, OutboxRow] = {}

        async def snapshot(_: Received) -> None:
            # The world at the moment the good sink receives its notice.
            for row in await rows_of(fanout):
                seen_at_arrival[row.notifier] = row

        good.on_receive = snapshot
        await fanout.emit(make_notice(Event.FAILED, error="boom"))

        # emit returned: every row is durable, none waited for a sink.
        rows = {r.notifier: r for r in await rows_of(fanout)}
        assert set(rows) == {"refused", "hangs", "good"}
        assert rows["hangs"].status is OutboxStatus.PENDING

        await wait_until(lambda: len(good.received) == 1, what="the good sink got its notice")
        # ... while the hanging notifier's first attempt had not even ended, and the refusing
        # notifier was still being retried.
        assert seen_at_arrival["hangs"].status is OutboxStatus.PENDING
        assert seen_at_arrival["hangs"].attempts == 0
        assert seen_at_arrival["refused"].status is OutboxStatus.PENDING

        final = {r.notifier: r for r in await settled(fanout, 3)}

    assert final["good"].status is OutboxStatus.SENT
    assert final["good"].attempts == 1

    refused = final["refused"]
    assert refused.status is OutboxStatus.FAILED
    assert refused.attempts == 3
    assert refused.last_error is not None
    assert "ClientConnectorError" in refused.last_error
    assert "gave up after 3 attempts" in refused.last_error

    hangs = final["hangs"]
    assert hangs.status is OutboxStatus.FAILED
    assert hangs.attempts == 3
    assert hangs.last_error is not None
    assert "outcome unknown" in hangs.last_error
    assert len(hanging.received) == 3  # retried, with one idempotency key
    assert set(hanging.keys()) == {hangs.idempotency_key}

    assert len(good.received) == 1
    assert counter("apprise", "timeout") - timeouts_before == 2  # two timeouts rescheduled
    assert counter("apprise", "failed") - failed_before == 2  # two rows dead


async def test_a_notice_emitted_twice_is_queued_and_sent_once(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "once",
                "plugin": "apprise",
                "on": ["completed"],
                "options": {"urls": [sink.json_url()]},
            }
        ],
    )
    notice = make_notice(Event.COMPLETED)
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(notice)
        await fanout.emit(notice)  # a runner re-emitting after its own hiccup
        await settled(fanout, 1)
    assert len(sink.received) == 1


async def test_filters_and_on_select_the_notifiers(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()

    def entry(name: str, **extra: object) -> dict[str, object]:
        return {
            "name": name,
            "plugin": "apprise",
            "on": ["completed"],
            "options": {"urls": [sink.json_url(f"/{name}")]},
            **extra,
        }

    settings = make_settings(
        tmp_path,
        [
            entry("all"),
            entry("guild-42", filter={"guild_ids": [42]}),
            entry("guild-7", filter={"guild_ids": [7]}),
            entry("autointel", filter={"commands": ["/autointel"]}),
            entry("other-command", filter={"commands": ["summarise"]}),
            entry("user-111", filter={"user_ids": [111]}),
            entry("disabled", enabled=False),
            {**entry("failures-only"), "on": ["failed"]},
        ],
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED, guild_id=42, user_id=111))
        await settled(fanout, 4)
    assert sorted(r.path for r in sink.received) == ["/all", "/autointel", "/guild-42", "/user-111"]


async def test_an_apprise_send_that_timed_out_is_waited_for_not_repeated(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    """TIMEOUT means unknown: the worker thread may still deliver. The retry waits for that same
    call instead of posting again, and counts its late success."""
    held = await sinks(holding=True)
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "slow",
                "plugin": "apprise",
                "on": ["completed"],
                # native: false sends through Apprise in the executor; rto = Apprise read timeout
                "options": {"urls": [held.json_url("/hook?rto=60")], "native": False},
            }
        ],
        timeout=0.5,
        max_attempts=6,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED))

        async def two_attempts_timed_out() -> bool:
            (row,) = await rows_of(fanout)
            return row.attempts >= 2

        await wait_until(two_attempts_timed_out, what="two attempts timed out")
        (row,) = await rows_of(fanout)
        assert row.status is OutboxStatus.PENDING
        assert row.last_error is not None
        assert "may still deliver" in row.last_error
        assert len(held.received) == 1  # the second attempt did not post again

        held.release()  # the sink finally answers (200) the one request it holds
        (row,) = await settled(fanout, 1)

    assert row.status is OutboxStatus.SENT
    assert len(held.received) == 1
