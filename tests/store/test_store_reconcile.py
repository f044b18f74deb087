"""Start-up reconciliation: the files are the truth and the index is made to agree with them."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from notifier.config import StorageSettings
from notifier.errors import StoreError
from notifier.records import DeliveryState, WorkflowStatus
from notifier.store import ResultQuery, ResultStore

from .support import EXAMPLE_RESULT, finished, make_record, metric, result_files

# Reconciling the files with the SQLite index; PostgreSQL has nothing to reconcile (one
# transaction per change: tests/store/test_postgres_store.py).
pytestmark = pytest.mark.sqlite_only


def _sql(storage: StorageSettings, statement: str, *params: object) -> None:
    """Change the index behind the store's back, as a crash or an operator would."""
    with sqlite3.connect(storage.path / "index.sqlite3") as db:
        db.execute(statement, params)


async def test_a_result_file_without_a_row_is_reindexed(storage: StorageSettings) -> None:
    async with await ResultStore.open(storage) as store:
        stored = await finished(store, make_record(user_id=99, url="https://orphan.example/"))
        await store.mark_delivered(stored.workflow_id, "followup")
    _sql(storage, "DELETE FROM workflows WHERE workflow_id = ?", stored.workflow_id)

    async with await ResultStore.open(storage) as store:
        row = await store.get(stored.workflow_id)
        found = await store.search(ResultQuery(url_contains="orphan"))
        assert (await store.reconcile()).clean

    assert row is not None
    assert (row.user_id, row.status, row.url, row.size_bytes, row.path) == (
        99,
        WorkflowStatus.COMPLETED,
        "https://orphan.example/",
        stored.size_bytes,
        stored.path,
    )
    # Whether it was delivered is in its delivery mark, beside the result.
    assert (row.delivery_state, row.delivered_via) == (DeliveryState.DELIVERED, "followup")
    assert [r.workflow_id for r in found] == [stored.workflow_id]


async def test_a_result_without_a_delivery_mark_is_reindexed_as_undelivered(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as store:
        stored = await finished(store)
        await store.mark_delivered(stored.workflow_id, "followup")
    _sql(storage, "DELETE FROM workflows WHERE workflow_id = ?", stored.workflow_id)
    (storage.path / "results" / f"{stored.workflow_id}.delivered").unlink()

    async with await ResultStore.open(storage) as store:
        row = await store.get(stored.workflow_id)
        pending = [r.workflow_id for r in await store.pending_delivery()]

    # Nothing says it was delivered: delivered again rather than never.
    assert row is not None and row.delivery_state is DeliveryState.PENDING
    assert pending == [stored.workflow_id]


async def test_a_pending_row_beside_a_delivery_mark_takes_the_marks_delivery(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as store:
        stored = await finished(store)
        await store.mark_undeliverable(stored.workflow_id, "every rung failed")
    # The row's update failed (a full disk), or the index came back from an older copy.
    _sql(
        storage,
        "UPDATE workflows SET delivery_state = 'pending', delivered_via = NULL "
        "WHERE workflow_id = ?",
        stored.workflow_id,
    )

    async with await ResultStore.open(storage, maintain=False) as store:
        report = await store.reconcile()
        row = await store.get(stored.workflow_id)

    assert report.deliveries_restored == 1
    assert row is not None
    assert (row.delivery_state, row.delivered_via) == (
        DeliveryState.UNDELIVERABLE,
        "every rung failed",
    )


async def test_stray_and_half_written_delivery_marks_are_removed(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as store:
        kept = await finished(store)
        await store.mark_delivered(kept.workflow_id, "dm")
    results = storage.path / "results"
    orphan = make_record().workflow_id  # a mark whose result is gone
    (results / f"{orphan}.delivered").write_text("{}")
    half = results / f".{kept.workflow_id}.0123456789abcdef.delivered.tmp"
    half.write_text('{"format": "notifier.deliv')

    async with await ResultStore.open(storage, maintain=False) as store:
        report = await store.reconcile()

    assert report.marks_removed == 2
    assert report.quarantined == 0  # a half-written mark is not a partial result
    assert result_files(storage.path) == [
        f"{kept.workflow_id}.delivered",
        f"{kept.workflow_id}.json",
    ]


async def test_a_lost_index_is_rebuilt_from_the_files(storage: StorageSettings) -> None:
    async with await ResultStore.open(storage) as store:
        ids = {(await finished(store)).workflow_id for _ in range(5)}
        running = make_record()
        await store.create(running)
    for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
        (storage.path / name).unlink(missing_ok=True)

    async with await ResultStore.open(storage) as store:
        rows = await store.search(ResultQuery(limit=100))

    assert {r.workflow_id for r in rows} == ids  # the running row had no file: nothing to rebuild


async def test_a_crash_after_the_rename_before_the_index_update_is_repaired(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as store:
        stored = await finished(store)
    _sql(
        storage,
        "UPDATE workflows SET status = 'running', finished_at = NULL, path = NULL, "
        "size_bytes = NULL WHERE workflow_id = ?",
        stored.workflow_id,
    )

    async with await ResultStore.open(storage) as store:
        row = await store.get(stored.workflow_id)
        assert await store.running() == []

    assert row is not None
    assert (row.status, row.path, row.finished_at) == (
        WorkflowStatus.COMPLETED,
        stored.path,
        stored.finished_at,
    )


async def test_a_row_whose_file_is_missing_is_marked_lost_and_counted(
    storage: StorageSettings, log_lines: list[str]
) -> None:
    async with await ResultStore.open(storage) as store:
        gone = await finished(store)
        kept = await finished(store)
        failed = await finished(store, status=WorkflowStatus.FAILED, error="boom")
    (storage.path / "results" / f"{gone.workflow_id}.json").unlink()
    (storage.path / "results" / f"{failed.workflow_id}.json").unlink()
    lost_before = metric("notifier_workflow_results_lost_total")

    store = await ResultStore.open(storage)
    try:
        rows = {
            w: await store.get(w) for w in (gone.workflow_id, kept.workflow_id, failed.workflow_id)
        }
        pending = [r.workflow_id for r in await store.pending_delivery()]
        with pytest.raises(StoreError, match="status lost"):
            await store.read_result(gone.workflow_id)
    finally:
        await store.close()

    assert metric("notifier_workflow_results_lost_total") == lost_before + 2
    statuses = {w: r.status for w, r in rows.items() if r is not None}
    assert statuses == {
        gone.workflow_id: WorkflowStatus.LOST,
        kept.workflow_id: WorkflowStatus.COMPLETED,
        failed.workflow_id: WorkflowStatus.LOST,
    }
    assert pending == [kept.workflow_id]  # nothing left to deliver for a lost result
    assert any("lost" in line and gone.workflow_id in line for line in log_lines)


def _document(workflow_id: str) -> dict[str, object]:
    record = make_record(workflow_id=workflow_id)
    return {
        "format": "notifier.result/1",
        "workflow_id": workflow_id,
        "workflow": {
            "command": record.command,
            "user_id": record.user_id,
            "options": record.options,
            "status": "completed",
            "created_at": 1.0,
            "finished_at": 2.0,
        },
        "result": {"ok": True},
    }


def _with(document: dict[str, object], path: str, value: object) -> bytes:
    changed = json.loads(json.dumps(document))
    node = changed
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return json.dumps(changed).encode()


CORRUPT = [
    pytest.param(lambda d: b"", id="empty"),
    pytest.param(lambda d: json.dumps(d).encode()[:-10], id="truncated"),
    pytest.param(lambda d: b"\xff\xfe not utf-8", id="not-utf8"),
    pytest.param(lambda d: b"[1, 2, 3]", id="not-an-object"),
    pytest.param(lambda d: _with(d, "format", "other/9"), id="unknown-format"),
    pytest.param(lambda d: _with(d, "workflow_id", "d" * 32), id="id-mismatch"),
    pytest.param(lambda d: _with(d, "workflow.status", "running"), id="status-running"),
    pytest.param(lambda d: _with(d, "workflow.user_id", "seven"), id="wrong-type"),
    pytest.param(lambda d: _with(d, "result", [1, 2]), id="result-not-object"),
]


@pytest.mark.parametrize("corrupt", CORRUPT)
async def test_a_corrupt_orphan_file_is_quarantined_not_indexed(
    storage: StorageSettings, log_lines: list[str], corrupt: object
) -> None:
    workflow_id = "b" * 32
    bad = corrupt(_document(workflow_id))  # type: ignore[operator]
    (storage.path / "results").mkdir(parents=True)
    (storage.path / "results" / f"{workflow_id}.json").write_bytes(bad)
    quarantined_before = metric("notifier_workflow_results_quarantined_total")

    async with await ResultStore.open(storage) as store:
        assert await store.get(workflow_id) is None

    [kept] = (storage.path / "quarantine").iterdir()
    assert kept.read_bytes() == bad
    assert result_files(storage.path) == []
    assert metric("notifier_workflow_results_quarantined_total") == quarantined_before + 1
    assert any(line.startswith("ERROR") and "quarantined" in line for line in log_lines)


async def test_a_corrupted_indexed_result_is_quarantined_and_its_row_marked_lost(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as store:
        stored = await finished(store)
    path = storage.path / "results" / f"{stored.workflow_id}.json"
    damaged = path.read_bytes()[:100]
    path.write_bytes(damaged)

    async with await ResultStore.open(storage) as store:
        row = await store.get(stored.workflow_id)

    assert row is not None and row.status is WorkflowStatus.LOST
    [kept] = (storage.path / "quarantine").iterdir()
    assert kept.read_bytes() == damaged


async def test_a_result_corrupted_while_running_is_reported_on_read(
    store: ResultStore, storage: StorageSettings
) -> None:
    stored = await finished(store)
    (storage.path / "results" / f"{stored.workflow_id}.json").write_bytes(b"{garbage")

    with pytest.raises(StoreError, match="corrupt"):
        await store.read_result(stored.workflow_id)


async def test_files_the_store_never_writes_are_left_alone(
    storage: StorageSettings, log_lines: list[str]
) -> None:
    (storage.path / "results").mkdir(parents=True)
    notes = storage.path / "results" / "README.txt"
    notes.write_text("operator notes")

    async with await ResultStore.open(storage) as store:
        report = await store.reconcile()

    assert report.clean
    assert notes.read_text() == "operator notes"
    assert any("README.txt" in line for line in log_lines)


async def test_reconcile_reports_nothing_when_all_agree(store: ResultStore) -> None:
    await finished(store)
    await store.create(make_record())  # running: not reconcile's business

    assert (await store.reconcile()).clean


async def test_repeating_a_finish_repairs_a_missing_row_with_the_real_file_size(
    storage: StorageSettings,
) -> None:
    # A lone surrogate makes the file ASCII-escaped: its size differs from a naive re-encoding.
    result = {"odd": "half a pair: \ud83d", "text": "ünïcødé"}
    async with await ResultStore.open(storage, maintain=False) as store:
        stored = await finished(store, result=result)
        await store.mark_delivered(stored.workflow_id, "dm")
        _sql(storage, "UPDATE workflows SET path = NULL WHERE workflow_id = ?", stored.workflow_id)

        again = (
            await store.finish(stored.workflow_id, status=WorkflowStatus.COMPLETED, result=result)
        ).record
        row = await store.get(stored.workflow_id)

    size = (storage.path / "results" / f"{stored.workflow_id}.json").stat().st_size
    assert again.size_bytes == size
    assert row is not None
    assert (row.size_bytes, row.path, row.delivery_state) == (
        size,
        stored.path,
        DeliveryState.DELIVERED,
    )


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database, " * 300)


def _pages_overwritten(path: Path) -> None:
    # A real index whose pages past the first are overwritten: SQLite opens it (the header and
    # the schema are intact) and finds the damage only when it reads those pages.
    with path.open("r+b") as handle:
        handle.seek(3 * 4096)
        handle.write(b"\xa5" * (8 * 4096))


@pytest.mark.parametrize("damage", [_garbage, _pages_overwritten], ids=["garbage", "pages"])
async def test_a_damaged_index_is_quarantined_and_rebuilt_from_the_files(
    storage: StorageSettings, log_lines: list[str], damage: Callable[[Path], None]
) -> None:
    async with await ResultStore.open(storage) as store:
        delivered = await finished(store)
        await store.mark_delivered(delivered.workflow_id, "channel")
        undelivered = await finished(store)
    index = storage.path / "index.sqlite3"
    damage(index)
    damaged = index.read_bytes()

    async with await ResultStore.open(storage) as store:
        rows = {r.workflow_id: r for r in await store.search(ResultQuery(limit=100))}
        pending = [r.workflow_id for r in await store.pending_delivery()]
        document = await store.read_result(delivered.workflow_id)

    assert set(rows) == {delivered.workflow_id, undelivered.workflow_id}
    assert rows[delivered.workflow_id].delivery_state is DeliveryState.DELIVERED
    assert pending == [undelivered.workflow_id]
    assert document["result"] == EXAMPLE_RESULT
    [moved] = (storage.path / "quarantine").glob("index.sqlite3.*[0-9a-f]")
    assert moved.read_bytes() == damaged  # kept for an operator, under a time-stamped name
    assert re.fullmatch(r"index\.sqlite3\.\d{8}T\d{6}Z\.[0-9a-f]{8}", moved.name)
    assert any(
        line.startswith("ERROR") and "index" in line and "damaged" in line for line in log_lines
    )


async def test_the_cli_does_not_touch_a_damaged_index_it_says_so(
    storage: StorageSettings,
) -> None:
    async with await ResultStore.open(storage) as store:
        await finished(store)
    index = storage.path / "index.sqlite3"
    _garbage(index)

    with pytest.raises(StoreError, match=r"damaged.*start the bot"):
        await ResultStore.open(storage, maintain=False)

    assert index.read_bytes().startswith(b"this is not an SQLite database")
    assert not list((storage.path / "quarantine").iterdir())
