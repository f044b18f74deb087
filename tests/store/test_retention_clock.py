"""Retention does not trust a clock that jumped: a store opened with the clock 31 days ahead used
to delete every result and file. Now the automatic sweeps purge nothing and say why in a WARNING,
until the clock is believable again or an operator purges by hand."""

from __future__ import annotations

import pytest

from notifier.config import StorageSettings
from notifier.store import ResultStore
from notifier.store.clock_check import HostTime, clock_doubt
from notifier.testing import wait_until

from .support import DAY_S, START_S, FakeClock, finished, result_files, stored

HOUR_S = 3_600.0
RETENTION_S = 30 * DAY_S


async def _filled(storage: StorageSettings, clock: FakeClock) -> list[str]:
    """Three delivered results, 20, 10 and 0 days old at the end, as a bot that ran for
    20 days leaves them (its sweeps recorded as it went)."""
    ids = []
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        for _ in range(3):
            record = await finished(store)
            await store.mark_delivered(record.workflow_id, "channel")
            ids.append(record.workflow_id)
            clock.advance(10 * DAY_S)
    clock.advance(-10 * DAY_S + HOUR_S)  # the last one finished an hour before the stop
    return ids


def _warnings(log_lines: list[str]) -> list[str]:
    return [line for line in log_lines if line.startswith("WARNING") and "retention" in line]


async def test_a_clock_31_days_ahead_at_start_deletes_nothing_and_says_why(
    storage: StorageSettings, clock: FakeClock, log_lines: list[str]
) -> None:
    ids = await _filled(storage, clock)
    before = result_files(storage.path)
    clock.jump(31 * DAY_S)  # restarted with the clock set 31 days ahead; the host stayed up

    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        rows = [await store.get(w) for w in ids]

    assert None not in rows
    assert result_files(storage.path) == before == stored(*ids, marked=tuple(ids))
    [warning] = _warnings(log_lines)
    assert "purged nothing (3 result(s) would have gone)" in warning
    assert "the clock jumped 31.0 days ahead since the last sweep" in warning
    assert "results purge --older-than 30d" in warning


async def test_after_a_reboot_a_clock_past_everything_the_store_knows_deletes_nothing(
    storage: StorageSettings, clock: FakeClock, log_lines: list[str]
) -> None:
    ids = await _filled(storage, clock)
    clock.reboot()  # the uptime clock starts again: the two clocks cannot be compared
    clock.jump(31 * DAY_S)

    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        assert None not in [await store.get(w) for w in ids]

    assert result_files(storage.path) == stored(*ids, marked=tuple(ids))
    [warning] = _warnings(log_lines)
    assert "after the latest time this store recorded" in warning
    assert "every result would go at once" in warning


async def test_a_jump_while_running_deletes_nothing(
    storage: StorageSettings, clock: FakeClock, log_lines: list[str]
) -> None:
    ids = await _filled(storage, clock)
    fast = storage.model_copy(update={"retention_interval": 0.05})
    async with await ResultStore.open(fast, clock=clock, uptime=clock.uptime) as store:
        clock.jump(25 * DAY_S)  # less than the retention period: only sign 1 can tell
        await wait_until(lambda: _warnings(log_lines), what="retention's warning")
        assert None not in [await store.get(w) for w in ids]
    assert result_files(storage.path) == stored(*ids, marked=tuple(ids))
    assert "the clock jumped 25.0 days ahead" in _warnings(log_lines)[0]


async def test_a_purge_by_hand_still_works_and_makes_its_clock_the_reference(
    storage: StorageSettings, clock: FakeClock, log_lines: list[str]
) -> None:
    oldest, middle, newest = await _filled(storage, clock)
    clock.jump(15 * DAY_S)  # the clock was 15 days behind, and an operator set it right
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        assert _warnings(log_lines)  # retention refused the jump...
        assert await store.purge() == 1  # ...the operator purges by hand: what is 30 days old
        assert await store.get(oldest) is None
    assert result_files(storage.path) == stored(middle, newest, marked=(middle, newest))

    log_lines.clear()
    clock.advance(11 * DAY_S)
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        assert await store.get(middle) is None  # the automatic sweep trusts the clock again
        assert await store.get(newest) is not None
    assert not _warnings(log_lines)


async def test_a_bot_stopped_longer_than_the_retention_period_leaves_it_to_the_operator(
    storage: StorageSettings, clock: FakeClock, log_lines: list[str]
) -> None:
    ids = await _filled(storage, clock)
    clock.advance(40 * DAY_S)  # really stopped for 40 days (the uptime clock agrees)

    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        assert None not in [await store.get(w) for w in ids]
    assert "every result would go at once" in _warnings(log_lines)[0]


def _at(wall_s: float, uptime_s: float, boot_id: str = "b1") -> HostTime:
    return HostTime(wall_s, boot_id, uptime_s)


T = START_S
CLOCKS = [
    # (now, last sweep, newest activity) -> doubted by which sign (None: trusted)
    pytest.param(_at(T + HOUR_S, 1 + HOUR_S), _at(T, 1), T, None, id="one-interval-later"),
    pytest.param(_at(T + 3 * HOUR_S, 1 + HOUR_S), _at(T, 1), T, "jumped", id="two-hours-too-far"),
    pytest.param(_at(T + 7 * DAY_S, 1 + 7 * DAY_S), _at(T, 1), T, None, id="stopped-a-week"),
    pytest.param(_at(T - DAY_S, 1 + HOUR_S), _at(T, 1), T, None, id="clock-set-back"),
    pytest.param(_at(T + 31 * DAY_S, 5, "b2"), _at(T, 1), T, "every", id="reboot-31-days"),
    pytest.param(_at(T + 20 * DAY_S, 5, "b2"), _at(T, 1), T, None, id="reboot-20-days"),
    pytest.param(_at(T + 31 * DAY_S, 5), None, T, "every", id="no-sweep-yet-31-days"),
    pytest.param(_at(T + 31 * DAY_S, 5), None, None, None, id="empty-store"),
    pytest.param(
        _at(T + 31 * DAY_S, 5, "b2"), _at(T, 1), T + 30 * DAY_S, None, id="recent-activity"
    ),
]


@pytest.mark.parametrize(("now", "last", "newest", "sign"), CLOCKS)
def test_which_clocks_a_sweep_trusts(
    now: HostTime, last: HostTime | None, newest: float | None, sign: str | None
) -> None:
    doubt = clock_doubt(now, last, newest, retention_s=RETENTION_S, interval_s=HOUR_S)
    if sign is None:
        assert doubt is None
    else:
        assert doubt is not None and sign in doubt
