"""The store's everyday life: create, progress, finish (write-ahead), read, deliver, never overwrite.

On every backend (tests/store/conftest.py), except those marked sqlite_only: they plant or read
files, or the SQLite index, directly."""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
import sqlite3
import stat
from pathlib import Path

import pytest

from notifier.config import StorageSettings
from notifier.errors import StoreError
from notifier.records import DeliveryState, WorkflowStatus
from notifier.store import ResultQuery, ResultStore, Store, open_store
from notifier.store.document import build_document, encode_document

from .support import (
    EXAMPLE_RESULT,
    FakeClock,
    document_ids,
    document_path,
    finished,
    make_record,
    metric,
    opened,
    result_files,
    sqlite_root,
    stored_bytes,
)


async def test_finish_writes_the_document_then_indexes_it(
    store: Store, store_settings: StorageSettings, clock: FakeClock
) -> None:
    before = metric("notifier_workflow_results_persisted_total", reason="completed")
    record = make_record(user_id=42, url="https://example.com/")
    await store.create(record)
    clock.advance(83)

    stored = (
        await store.finish(
            record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
        )
    ).record

    held = await stored_bytes(store_settings, record.workflow_id)
    on_disk = json.loads(held)
    assert on_disk["result"] == EXAMPLE_RESULT
    assert on_disk["workflow"]["user_id"] == 42
    assert on_disk["workflow"]["status"] == "completed"
    assert stored.status is WorkflowStatus.COMPLETED
    assert stored.size_bytes == len(held)
    if (root := sqlite_root(store_settings)) is not None:
        path = root / "results" / f"{record.workflow_id}.json"
        assert stored.size_bytes == path.stat().st_size
    assert stored.path == document_path(store_settings, record.workflow_id)
    assert stored.duration_s == pytest.approx(83)
    assert await store.get(record.workflow_id) == stored
    assert await store.read_result(record.workflow_id) == on_disk
    assert metric("notifier_workflow_results_persisted_total", reason="completed") == before + 1


async def test_the_same_result_again_is_a_no_op(
    store: Store, store_settings: StorageSettings
) -> None:
    first = await finished(store)
    bytes_before = await stored_bytes(store_settings, first.workflow_id)
    persisted = metric("notifier_workflow_results_persisted_total", reason="completed")

    again = (
        await store.finish(
            first.workflow_id, status=WorkflowStatus.COMPLETED, result=dict(EXAMPLE_RESULT)
        )
    ).record

    assert again == first
    assert await stored_bytes(store_settings, first.workflow_id) == bytes_before
    assert await document_ids(store_settings) == [first.workflow_id]
    assert metric("notifier_workflow_results_persisted_total", reason="completed") == persisted


@pytest.mark.parametrize(
    ("status", "result", "error"),
    [
        (WorkflowStatus.COMPLETED, {**EXAMPLE_RESULT, "word_count": 1}, ""),
        (WorkflowStatus.FAILED, EXAMPLE_RESULT, "boom"),
        (WorkflowStatus.COMPLETED, EXAMPLE_RESULT, "an error text"),
        (WorkflowStatus.COMPLETED, None, ""),
    ],
    ids=["other-result", "other-status", "other-error", "no-result"],
)
async def test_a_different_result_is_refused_and_the_first_stays(
    store: Store,
    store_settings: StorageSettings,
    status: WorkflowStatus,
    result: dict[str, object] | None,
    error: str,
) -> None:
    first = await finished(store)
    bytes_before = await stored_bytes(store_settings, first.workflow_id)

    with pytest.raises(StoreError, match="never overwritten"):
        await store.finish(first.workflow_id, status=status, result=result, error=error)

    assert await stored_bytes(store_settings, first.workflow_id) == bytes_before
    got = await store.get(first.workflow_id)
    assert got is not None and (got.status, got.error) == (first.status, first.error)
    assert (await store.read_result(first.workflow_id))["result"] == EXAMPLE_RESULT


async def test_never_overwritten_across_a_restart(store_settings: StorageSettings) -> None:
    async with opened(store_settings) as store:
        first = await finished(store)
    async with opened(store_settings) as store:
        with pytest.raises(StoreError, match="never overwritten"):
            await store.finish(first.workflow_id, status=WorkflowStatus.COMPLETED, result={"x": 1})
        same = (
            await store.finish(
                first.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
            )
        ).record
        assert same.workflow_id == first.workflow_id
        assert (await store.read_result(first.workflow_id))["result"] == EXAMPLE_RESULT


def _document_for(workflow_id: str, result: dict[str, object]) -> bytes:
    other = make_record(workflow_id=workflow_id)
    other.status, other.finished_at = WorkflowStatus.COMPLETED, 1.0
    return encode_document(build_document(other, result))


@pytest.mark.sqlite_only
async def test_a_file_that_appeared_under_a_running_id_is_never_overwritten(
    store: ResultStore, storage: StorageSettings
) -> None:
    # The store no longer reads the disk before writing a running workflow's result: the
    # writer finds the file (a restored backup, another process) and the stored outcome decides.
    record = make_record()
    await store.create(record)
    path = storage.path / "results" / f"{record.workflow_id}.json"
    theirs = _document_for(record.workflow_id, {"theirs": True})
    path.write_bytes(theirs)

    with pytest.raises(StoreError, match="never overwritten"):
        await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result={"x": 1})

    assert path.read_bytes() == theirs
    assert not store.pending_writes
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp left behind


@pytest.mark.sqlite_only
async def test_a_corrupt_file_under_a_running_id_is_quarantined_and_the_result_written(
    store: ResultStore, storage: StorageSettings
) -> None:
    record = make_record()
    await store.create(record)
    path = storage.path / "results" / f"{record.workflow_id}.json"
    path.write_bytes(b'{"trunc')

    stored = (
        await store.finish(
            record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
        )
    ).record

    assert stored.status is WorkflowStatus.COMPLETED
    assert json.loads(path.read_bytes())["result"] == EXAMPLE_RESULT
    [kept] = (storage.path / "quarantine").iterdir()
    assert kept.read_bytes() == b'{"trunc'


@pytest.mark.sqlite_only
async def test_a_workflow_whose_row_is_missing_is_indexed_whole_when_it_finishes(
    store: ResultStore, storage: StorageSettings
) -> None:
    # Finishing updates only the outcome columns of the row `create` wrote; without that row
    # (the index refused it, or lost it), the whole row is written, so searches still find it.
    record = make_record(user_id=77, url="https://rowless.example/a")
    await store.create(record)
    db = sqlite3.connect(storage.path / "index.sqlite3")
    try:
        with db:
            db.execute("DELETE FROM workflows WHERE workflow_id = ?", (record.workflow_id,))
    finally:
        db.close()

    await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT)

    [by_user] = await store.search(ResultQuery(user_id=77))
    [by_url] = await store.search(ResultQuery(url_contains="rowless.example"))
    assert by_user.workflow_id == by_url.workflow_id == record.workflow_id
    assert by_user.status is WorkflowStatus.COMPLETED
    assert by_user.path == f"results/{record.workflow_id}.json"


async def test_finish_for_a_workflow_never_created_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="never created"):
        await store.finish("0" * 32, status=WorkflowStatus.COMPLETED, result={})


@pytest.mark.parametrize("status", [WorkflowStatus.RUNNING, WorkflowStatus.LOST])
async def test_finish_takes_only_a_finished_status(store: Store, status: WorkflowStatus) -> None:
    record = make_record()
    await store.create(record)
    with pytest.raises(ValueError, match="finished status"):
        await store.finish(record.workflow_id, status=status, result={})


async def test_creating_the_same_id_twice_is_refused(store: Store) -> None:
    record = make_record()
    await store.create(record)
    with pytest.raises(StoreError, match="already exists"):
        await store.create(record)


async def test_progress_is_visible_while_running_and_kept_when_interrupted(
    store: Store,
) -> None:
    record = make_record()
    await store.create(record)
    await store.update_progress(record.workflow_id, stage="fetching pages", progress=0.4)

    [running] = await store.running()
    assert (running.workflow_id, running.stage, running.progress) == (
        record.workflow_id,
        "fetching pages",
        0.4,
    )

    stored = (
        await store.finish(
            record.workflow_id,
            status=WorkflowStatus.INTERRUPTED,
            result=None,
            error="the bot stopped",
            reason="interrupted",
        )
    ).record
    assert (stored.status, stored.stage, stored.progress) == (
        WorkflowStatus.INTERRUPTED,
        "fetching pages",
        0.4,
    )
    assert await store.running() == []
    assert [r.workflow_id for r in await store.pending_delivery()] == [record.workflow_id]
    document = await store.read_result(record.workflow_id)
    assert document["result"] is None
    assert document["workflow"]["error"] == "the bot stopped"


async def test_rows_left_running_survive_a_restart_untouched(
    store_settings: StorageSettings,
) -> None:
    record = make_record()
    async with opened(store_settings) as store:
        await store.create(record)
        await store.update_progress(record.workflow_id, stage="analysing", progress=0.7)
    async with opened(store_settings) as store:
        [row] = await store.running()
    assert (row.workflow_id, row.status, row.stage) == (
        record.workflow_id,
        WorkflowStatus.RUNNING,
        "analysing",
    )


async def test_delivery_state_is_recorded(store: Store, clock: FakeClock) -> None:
    delivered = await finished(store)
    refused = await finished(store)
    waiting = await finished(store)
    clock.advance(5)

    await store.mark_delivered(delivered.workflow_id, "followup")
    await store.mark_undeliverable(refused.workflow_id, "every rung failed")

    got = await store.get(delivered.workflow_id)
    assert got is not None
    assert (got.delivery_state, got.delivered_via, got.delivered_at) == (
        DeliveryState.DELIVERED,
        "followup",
        clock.now,
    )
    got = await store.get(refused.workflow_id)
    assert got is not None
    assert (got.delivery_state, got.delivered_via) == (
        DeliveryState.UNDELIVERABLE,
        "every rung failed",
    )
    assert [r.workflow_id for r in await store.pending_delivery()] == [waiting.workflow_id]


async def test_delivery_of_an_unknown_workflow_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown workflow"):
        await store.mark_delivered("f" * 32, "dm")


async def test_durations_are_completed_runs_of_that_depth_newest_first(
    store: Store, clock: FakeClock
) -> None:
    async def run(depth: str, seconds: float, status: WorkflowStatus) -> None:
        record = make_record(depth=depth)
        await store.create(record)
        clock.advance(seconds)
        await store.finish(record.workflow_id, status=status, result={}, error="")
        clock.advance(1)

    await run("deep", 100, WorkflowStatus.COMPLETED)
    await run("deep", 200, WorkflowStatus.COMPLETED)
    await run("quick", 5, WorkflowStatus.COMPLETED)
    await run("deep", 999, WorkflowStatus.FAILED)
    await run("deep", 300, WorkflowStatus.COMPLETED)

    assert await store.durations("autointel", "deep", 10) == pytest.approx([300, 200, 100])
    assert await store.durations("autointel", "deep", 2) == pytest.approx([300, 200])
    assert await store.durations("other", "deep", 10) == []


async def test_recent_ids_complete_a_users_own_ids_by_prefix(
    store: Store, clock: FakeClock
) -> None:
    mine = []
    for workflow_id in ("ab" + "1" * 30, "ab" + "2" * 30, "cd" + "3" * 30):
        record = make_record(workflow_id=workflow_id, user_id=5)
        await store.create(record)
        mine.append(workflow_id)
        clock.advance(1)
    await store.create(make_record(workflow_id="ab" + "9" * 30, user_id=6))

    assert [r.workflow_id for r in await store.recent_ids(5)] == mine[::-1]
    assert [r.workflow_id for r in await store.recent_ids(5, "AB")] == [mine[1], mine[0]]
    assert [r.workflow_id for r in await store.recent_ids(5, "ab2")] == [mine[1]]
    assert await store.recent_ids(5, "ab", limit=1) == [await store.get(mine[1])]
    assert await store.recent_ids(5, "%") == []
    assert await store.recent_ids(5, "zz") == []


async def test_values_json_cannot_hold_are_kept_as_text(store: Store) -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    stored = await finished(store, result={"when": when, "pair": (1, 2), "tags": {"a"}})

    document = await store.read_result(stored.workflow_id)

    assert document["result"] == {"when": str(when), "pair": [1, 2], "tags": ["a"]}


class _Colour(enum.Enum):
    RED = "red"


class _Float64(float):
    """Stands in for numpy.float64: a float subclass."""


def _strict_json(data: bytes) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"{token} is not JSON")

    return json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="fast-encoder"),
        # An int beyond 64 bits makes orjson refuse: the standard library then applies the rules.
        pytest.param({"big": 2**70}, id="standard-library"),
    ],
)
async def test_a_result_is_stored_as_standard_json_whatever_it_holds(
    store: Store, store_settings: StorageSettings, extra: dict[str, object]
) -> None:
    result = {
        "score": float("nan"),
        "bounds": [float("-inf"), 0.5, float("inf")],
        "colour": _Colour.RED,
        "mean": _Float64(1.25),
        "nested": {"inside": (float("nan"), 2)},
        **extra,
    }
    stored = await finished(store, result=result)

    # no NaN or Infinity tokens: jq can read it
    on_disk = _strict_json(await stored_bytes(store_settings, stored.workflow_id))
    assert isinstance(on_disk, dict)
    assert on_disk["result"] == {
        "score": None,
        "bounds": [None, 0.5, None],
        "colour": "red",
        "mean": 1.25,
        "nested": {"inside": [None, 2]},
        **extra,
    }
    assert (await store.read_result(stored.workflow_id))["result"] == on_disk["result"]


@pytest.mark.parametrize(
    ("result", "as_stored"),
    [
        pytest.param(
            {"n": float("nan"), "edges": [-(2**63), 2**64 - 1, 1e300], "set": {1}, "t": (2, 3)},
            {"n": None, "edges": [-(2**63), 2**64 - 1, 1e300], "set": [1], "t": [2, 3]},
            id="fast-encoder",
        ),
        pytest.param(
            {"big": 2**70, "neg": -(2**70), "digits": "1" * 40},
            {"big": 2**70, "neg": -(2**70), "digits": "1" * 40},
            id="long-integers",
        ),
        pytest.param(
            {"half": "a\udc80b", "big": 2**64}, {"half": "a\udc80b", "big": 2**64}, id="surrogate"
        ),
    ],
)
async def test_finish_hands_back_the_document_every_later_read_gets(
    store: Store, result: dict[str, object], as_stored: dict[str, object]
) -> None:
    """What the runner renders first is what /retrieve_results and the CLI read later, and an
    integer stays exact (orjson would read one beyond 64 bits as a float)."""
    record = make_record()
    await store.create(record)

    stored = await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result=result)

    assert stored.document["result"] == as_stored
    assert [type(v) for v in stored.document["result"].values()] == [
        type(v) for v in as_stored.values()
    ]
    assert stored.document == await store.read_result(record.workflow_id)


@pytest.mark.sqlite_only
async def test_a_result_stored_with_nan_tokens_before_is_the_same_outcome_again(
    store: ResultStore, storage: StorageSettings
) -> None:
    # Documents written before results became standard JSON hold `NaN` tokens; finishing the
    # same workflow again with the same result must stay a no-op, not "a different result".
    record = make_record()
    await store.create(record)
    old = make_record(workflow_id=record.workflow_id)
    old.status, old.finished_at = WorkflowStatus.COMPLETED, 1.0
    document = build_document(old, {"score": float("nan"), "top": [float("inf"), 1]})
    path = storage.path / "results" / f"{record.workflow_id}.json"
    path.write_text(json.dumps(document) + "\n")
    before = path.read_bytes()

    again = (
        await store.finish(
            record.workflow_id,
            status=WorkflowStatus.COMPLETED,
            result={"score": float("nan"), "top": [float("inf"), 1]},
        )
    ).record

    assert again.status is WorkflowStatus.COMPLETED
    assert path.read_bytes() == before
    assert b"NaN" in before


async def test_unicode_and_lone_surrogates_are_stored_exactly(store: Store) -> None:
    result = {"title": "Ünïcødé 漢字 🚀", "odd": "half a pair: \ud83d", "ключ": "значение"}
    stored = await finished(store, result=result)

    assert (await store.read_result(stored.workflow_id))["result"] == result


async def test_a_result_json_cannot_encode_is_refused_before_any_write(
    store: Store, store_settings: StorageSettings
) -> None:
    record = make_record()
    await store.create(record)
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100_000):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]

    with pytest.raises(StoreError, match="cannot be encoded"):
        await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result=deep)
    if (root := sqlite_root(store_settings)) is not None:
        assert result_files(root) == []
    assert await document_ids(store_settings) == []
    got = await store.get(record.workflow_id)
    assert got is not None and got.status is WorkflowStatus.RUNNING


async def test_reading_a_result_that_does_not_exist_says_why(store: Store) -> None:
    record = make_record()
    await store.create(record)
    with pytest.raises(StoreError, match="status running"):
        await store.read_result(record.workflow_id)
    with pytest.raises(StoreError, match="no workflow"):
        await store.read_result("e" * 32)
    assert await store.get("e" * 32) is None


async def test_a_cancelled_caller_does_not_cancel_the_write(
    store_settings: StorageSettings,
) -> None:
    store = await open_store(store_settings)
    record = make_record()
    await store.create(record)
    caller = asyncio.create_task(
        store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT)
    )
    await asyncio.sleep(0)  # the write has started
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await store.close()  # waits for the shielded write

    async with opened(store_settings) as reopened:
        assert (await reopened.read_result(record.workflow_id))["result"] == EXAMPLE_RESULT


@pytest.mark.sqlite_only
async def test_directories_are_0700_and_files_0600(
    store: ResultStore, storage: StorageSettings
) -> None:
    stored = await finished(store)
    (storage.path / "results" / f"{'0' * 32}.json").write_text("not json")
    await store.reconcile()  # quarantines it

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    for directory in (storage.path, storage.path / "results", storage.path / "quarantine"):
        assert mode(directory) == 0o700, directory
    private = [
        storage.path / "index.sqlite3",
        storage.path / "results" / f"{stored.workflow_id}.json",
        *(storage.path / "quarantine").iterdir(),
    ]
    private += [p for p in storage.path.glob("index.sqlite3-*")]
    assert len(private) >= 3
    for file in private:
        assert mode(file) == 0o600, file


async def test_a_closed_store_refuses_work(store_settings: StorageSettings) -> None:
    store = await open_store(store_settings)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get("a" * 32)
