"""Retention deletes exactly the expired results, file and row, and a crash mid-purge is finished
by the next start instead of leaving a dangling row or a resurrected file.

The rules run on every backend (tests/store/conftest.py); the crashes mid-purge are SQLite's (its
purge spans files and rows: sqlite_only), a PostgreSQL purge being one transaction per batch."""

from __future__ import annotations

import pytest

from notifier.config import StorageSettings
from notifier.records import WorkflowStatus
from notifier.store import ResultStore, Store
from notifier.store import files as store_files
from notifier.store.sqlite.index import ResultIndex
from notifier.testing import wait_until

from .support import (
    DAY_S,
    FakeClock,
    document_ids,
    finished,
    make_record,
    metric,
    opened,
    result_files,
    sqlite_root,
    stored,
)


class Crash(Exception):
    """Stands in for the process dying at a chosen step."""


async def _delivered(store: Store, **record_fields: object) -> str:
    stored = await finished(store, make_record(**record_fields))  # type: ignore[arg-type]
    await store.mark_delivered(stored.workflow_id, "followup")
    return stored.workflow_id


async def test_retention_removes_exactly_the_expired_results(
    store: Store, store_settings: StorageSettings, clock: FakeClock
) -> None:
    old_delivered = await _delivered(store)
    old_failed = await finished(store, status=WorkflowStatus.FAILED, error="boom")
    await store.mark_undeliverable(old_failed.workflow_id, "every rung failed")
    old_undelivered = (await finished(store)).workflow_id
    old_running = make_record()
    await store.create(old_running)
    clock.advance(20 * DAY_S)
    recent = await _delivered(store)
    clock.advance(11 * DAY_S)  # the first four are now 31 days old, `recent` 11

    purged = await store.purge()

    assert purged == 2
    assert await store.get(old_delivered) is None
    assert await store.get(old_failed.workflow_id) is None
    for kept in (old_undelivered, old_running.workflow_id, recent):
        assert await store.get(kept) is not None, kept
    assert await document_ids(store_settings) == sorted([old_undelivered, recent])
    if (root := sqlite_root(store_settings)) is not None:
        # The purged results' delivery marks went with them.
        assert result_files(root) == stored(old_undelivered, recent, marked=(recent,))


async def test_retention_runs_when_the_store_opens(
    store_settings: StorageSettings, clock: FakeClock
) -> None:
    async with opened(store_settings, clock=clock, uptime=clock.uptime) as store:
        expired = await _delivered(store)
        clock.advance(29 * DAY_S)
        fresh = await _delivered(store)
    clock.advance(2 * DAY_S)  # the bot was stopped for two days: not a clock jump

    async with opened(store_settings, clock=clock, uptime=clock.uptime) as store:
        assert await store.get(expired) is None
        assert await store.get(fresh) is not None
    assert await document_ids(store_settings) == [fresh]
    if (root := sqlite_root(store_settings)) is not None:
        assert result_files(root) == stored(fresh, marked=(fresh,))


async def test_the_periodic_task_purges_without_a_restart(
    store_settings: StorageSettings, clock: FakeClock
) -> None:
    fast = store_settings.model_copy(update={"retention_interval": 0.02})
    async with opened(fast, clock=clock, uptime=clock.uptime) as store:
        expired = await _delivered(store)
        clock.advance(29 * DAY_S)
        fresh = await _delivered(store)
        clock.advance(2 * DAY_S)

        async def only_fresh_left() -> bool:
            return await document_ids(store_settings) == [fresh]

        await wait_until(only_fresh_left)
        if (root := sqlite_root(store_settings)) is not None:
            await wait_until(lambda: result_files(root) == stored(fresh, marked=(fresh,)))
        assert await store.get(expired) is None


async def test_an_operator_can_purge_by_age_including_undelivered(
    store: Store, store_settings: StorageSettings, clock: FakeClock
) -> None:
    undelivered = (await finished(store)).workflow_id
    delivered = await _delivered(store)
    clock.advance(3 * DAY_S)

    assert await store.purge(older_than_s=2 * DAY_S, dry_run=True) == 1
    assert await store.purge(older_than_s=2 * DAY_S, include_undelivered=True, dry_run=True) == 2
    # A dry run deletes nothing.
    assert await document_ids(store_settings) == sorted([undelivered, delivered])
    root = sqlite_root(store_settings)
    if root is not None:
        assert result_files(root) == stored(undelivered, delivered, marked=(delivered,))

    assert await store.purge(older_than_s=2 * DAY_S, include_undelivered=True) == 2
    assert await store.get(undelivered) is None
    assert await store.get(delivered) is None
    assert await document_ids(store_settings) == []
    if root is not None:
        assert result_files(root) == []


async def test_purge_before_a_moment(store: Store, clock: FakeClock) -> None:
    first = await _delivered(store)
    clock.advance(10)
    moment = clock.now
    clock.advance(10)
    second = await _delivered(store)

    assert await store.purge(before=moment) == 1
    assert await store.get(first) is None
    assert await store.get(second) is not None


async def test_purge_takes_one_cutoff(store: Store) -> None:
    with pytest.raises(ValueError, match="not both"):
        await store.purge(older_than_s=1, before=1)


@pytest.mark.sqlite_only  # a lost row is one whose file went; PostgreSQL has no such rows
async def test_a_lost_row_ages_out_even_though_never_delivered(
    storage: StorageSettings, clock: FakeClock
) -> None:
    async with await ResultStore.open(storage, clock=clock) as store:
        stored = await finished(store)
    (storage.path / "results" / f"{stored.workflow_id}.json").unlink()
    async with await ResultStore.open(storage, clock=clock) as store:
        lost = await store.get(stored.workflow_id)
        assert lost is not None and lost.status is WorkflowStatus.LOST
        clock.advance(31 * DAY_S)
        assert await store.purge() == 1


@pytest.mark.sqlite_only
async def test_a_crash_after_marking_rows_is_finished_by_the_next_start(
    storage: StorageSettings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await ResultStore.open(storage, clock=clock) as store:
        doomed = [await _delivered(store) for _ in range(3)]
        clock.advance(10 * DAY_S)
        survivor = await _delivered(store)
        clock.advance(21 * DAY_S)

        def crash(*args: object) -> None:
            raise Crash

        monkeypatch.setattr(store_files, "remove_results", crash)
        with pytest.raises(Crash):
            await store.purge()
        monkeypatch.undo()
        # Marked rows are already invisible; their files are still there.
        assert [await store.get(w) for w in doomed] == [None, None, None]
        assert result_files(storage.path) == stored(*doomed, survivor, marked=(*doomed, survivor))

    # Reopen with a retention so long that only reconciliation can be what removes them.
    patient = storage.model_copy(update={"retention_days": 10_000})
    lost_before = metric("notifier_workflow_results_lost_total")
    async with await ResultStore.open(patient, clock=clock) as store:
        report = await store.reconcile()
        assert await store.get(survivor) is not None
        assert [await store.get(w) for w in doomed] == [None, None, None]
    assert report.clean  # the start-up pass already did it
    assert result_files(storage.path) == stored(survivor, marked=(survivor,))
    assert metric("notifier_workflow_results_lost_total") == lost_before


@pytest.mark.sqlite_only
async def test_a_crash_after_deleting_files_is_not_reported_as_lost(
    storage: StorageSettings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await ResultStore.open(storage, clock=clock) as store:
        doomed = await _delivered(store)
        clock.advance(31 * DAY_S)

        async def crash(self: ResultIndex, ids: object) -> None:
            raise Crash

        monkeypatch.setattr(ResultIndex, "delete", crash)
        with pytest.raises(Crash):
            await store.purge()
        monkeypatch.undo()
    assert result_files(storage.path) == []
    lost_before = metric("notifier_workflow_results_lost_total")

    async with await ResultStore.open(
        storage.model_copy(update={"retention_days": 10_000}), clock=clock
    ) as store:
        assert await store.get(doomed) is None
        assert (await store.reconcile()).clean
    assert metric("notifier_workflow_results_lost_total") == lost_before


@pytest.mark.sqlite_only
async def test_a_half_done_purge_is_counted_in_the_report(
    storage: StorageSettings, clock: FakeClock
) -> None:
    async with await ResultStore.open(storage, clock=clock) as store:
        doomed = await _delivered(store)
    index = await ResultIndex.open(storage.path / "index.sqlite3")
    await index.mark_purging([doomed], clock.now)  # the first step, then "the crash"
    await index.close()

    async with await ResultStore.open(storage, clock=clock, maintain=False) as store:
        report = await store.reconcile()

    assert report.purges_finished == 1
    assert report.reindexed == 0
    assert result_files(storage.path) == []
