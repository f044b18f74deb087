"""Recorded steps of durable workflows: what a resumed workflow gets back instead of running a step
again. Against the real store on every backend (tests/store/conftest.py: SQLite and files in
tmp_path, a PostgreSQL database): a step is durable when `record_step` returns (a process killed
right after still has it), comes back in order, is replaced only by the same step, refused when
too large or not JSON, never holds a configured secret, and goes away with its workflow; resume
counts survive a restart. SQLite's own: an index from the previous schema version is upgraded,
torn step files are cut (sqlite_only)."""

from __future__ import annotations

import datetime
import errno
import os
import sqlite3
import textwrap
import uuid

import pytest

from notifier.config import StorageSettings
from notifier.errors import StepNotStorable, StepTooLarge, StoreError
from notifier.logs import redactor
from notifier.records import RecordedStep, WorkflowStatus
from notifier.store import ResultQuery, ResultStore, Store
from notifier.store.sqlite.schema import SCHEMA_VERSION
from notifier.store.step_log import STEPS_DIR

from .support import (
    DAY_S,
    START_S,
    FakeClock,
    finished,
    make_record,
    opened,
    raw_bytes,
    run_killed,
    sqlite_root,
)

PAGE = {"url": "https://example.com/a", "title": "A", "words": 812, "links": ["b", "c"]}


async def _running(store: Store) -> str:
    record = make_record(created_at=START_S)
    await store.create(record)
    return record.workflow_id


async def test_steps_come_back_in_order_after_a_restart(
    store_settings: StorageSettings, clock: FakeClock
) -> None:
    async with opened(store_settings, clock=clock, uptime=clock.uptime) as store:
        workflow_id = await _running(store)
        await store.record_step(workflow_id, 1, "page:0", PAGE)
        await store.record_step(workflow_id, 0, "plan", ["https://example.com/a"])
        clock.advance(5)
        await store.record_step(workflow_id, 2, "page:1", {"tuple": (1, 2), "n": None})

    async with opened(store_settings, clock=clock, uptime=clock.uptime) as reopened:
        steps = await reopened.steps(workflow_id)

    assert steps == [
        RecordedStep(0, "plan", ["https://example.com/a"], START_S),
        RecordedStep(1, "page:0", PAGE, START_S),
        RecordedStep(2, "page:1", {"tuple": [1, 2], "n": None}, START_S + 5),
    ]


async def test_a_workflow_without_steps_has_none(store: Store) -> None:
    workflow_id = await _running(store)
    await store.record_step(await _running(store), 0, "plan", [])

    assert await store.steps(workflow_id) == []


_KILLED_AFTER_RECORDING = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from notifier.config import StorageSettings
    from notifier.records import WorkflowRecord
    from notifier.store import open_store

    async def main() -> None:
        backend, dsn = sys.argv[2], sys.argv[3] or None
        settings = StorageSettings(path=Path(sys.argv[1]), backend=backend, postgres_dsn=dsn)
        store = await open_store(settings)
        workflow_id = sys.argv[4]
        await store.create(WorkflowRecord(workflow_id=workflow_id, command="crawl", user_id=1))
        for index in range(3):
            await store.record_step(workflow_id, index, f"page:{index}", {"page": index})
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: only what reached the disk

    asyncio.run(main())
    """
)


async def test_a_step_is_on_disk_when_record_step_returns(
    store_settings: StorageSettings,
) -> None:
    workflow_id = uuid.uuid4().hex
    await run_killed(_KILLED_AFTER_RECORDING, store_settings, workflow_id)

    async with opened(store_settings) as store:
        steps = await store.steps(workflow_id)
        [left_running] = await store.resumable()

    assert [(s.index, s.name, s.value) for s in steps] == [
        (0, "page:0", {"page": 0}),
        (1, "page:1", {"page": 1}),
        (2, "page:2", {"page": 2}),
    ]
    assert left_running.workflow_id == workflow_id


async def test_the_same_step_again_replaces_its_value(store: Store, clock: FakeClock) -> None:
    # The process died after the write, before the workflow went on: the replay writes it again.
    workflow_id = await _running(store)
    await store.record_step(workflow_id, 0, "page:0", {"try": 1})
    clock.advance(60)
    await store.record_step(workflow_id, 0, "page:0", {"try": 2})

    assert await store.steps(workflow_id) == [RecordedStep(0, "page:0", {"try": 2}, START_S + 60)]


async def test_another_step_under_a_recorded_index_is_refused_and_the_first_stays(
    store: Store,
) -> None:
    workflow_id = await _running(store)
    await store.record_step(workflow_id, 3, "page:2", PAGE)

    with pytest.raises(ValueError, match=r"step 3 was recorded as 'page:2', not 'page:5'"):
        await store.record_step(workflow_id, 3, "page:5", {"other": True})

    assert await store.steps(workflow_id) == [RecordedStep(3, "page:2", PAGE, START_S)]


async def test_a_value_over_the_limit_is_refused_naming_the_limit(
    store_settings: StorageSettings, clock: FakeClock
) -> None:
    async with opened(store_settings, clock=clock, max_step_bytes=1_000) as store:
        workflow_id = await _running(store)
        await store.record_step(workflow_id, 0, "small", "x" * 998)  # 1,000 bytes with quotes

        with pytest.raises(StepTooLarge) as refused:
            await store.record_step(workflow_id, 1, "big", "x" * 1_233)

        assert str(refused.value) == (
            "the step's value is 1,235 bytes; the limit is 1,000 (runner.max_step_bytes)"
        )
        assert refused.value.limit_bytes == 1_000
        assert [s.name for s in await store.steps(workflow_id)] == ["small"]


async def test_the_default_limit_is_one_mebibyte(store: Store) -> None:
    workflow_id = await _running(store)

    with pytest.raises(StepTooLarge, match=r"the limit is 1,048,576 \(runner.max_step_bytes\)"):
        await store.record_step(workflow_id, 0, "page:0", "x" * (1024 * 1024))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), "datetime"),
        ({"seen": {1, 2}}, "set"),
        (object(), "object"),
    ],
)
async def test_a_value_that_is_not_json_is_refused(store: Store, value: object, why: str) -> None:
    workflow_id = await _running(store)

    with pytest.raises(StepNotStorable, match=why):
        await store.record_step(workflow_id, 0, "page:0", value)

    assert await store.steps(workflow_id) == []


async def test_a_value_that_contains_itself_is_refused(store: Store) -> None:
    workflow_id = await _running(store)
    looped: list[object] = []
    looped.append(looped)

    with pytest.raises(StepNotStorable, match="nested deeper than 255 levels"):
        await store.record_step(workflow_id, 0, "page:0", looped)


async def test_json_that_orjson_refuses_is_still_stored_exactly(store: Store) -> None:
    workflow_id = await _running(store)
    value = {"big": 2**70, "text": "a lone \udc80 surrogate"}

    await store.record_step(workflow_id, 0, "page:0", value)

    [step] = await store.steps(workflow_id)
    assert step.value == value


async def test_a_configured_secret_is_stored_masked(
    store: Store, store_settings: StorageSettings
) -> None:
    secret = f'pa"ss\\{uuid.uuid4().hex}'  # a quote and a backslash: escaped in JSON text
    redactor.add([secret])
    workflow_id = await _running(store)

    await store.record_step(
        workflow_id, 0, "page:0", {"header": f"Bearer {secret}", secret: [f"x{secret}y"]}
    )

    [step] = await store.steps(workflow_id)
    assert step.value == {"header": "Bearer ***", "***": ["x***y"]}
    on_disk = await raw_bytes(store_settings)
    assert b"Bearer ***" in on_disk  # the step is in what was searched
    assert secret.encode() not in on_disk
    assert uuid.UUID(secret[-32:]).hex.encode() not in on_disk
    assert uuid.UUID(secret[-32:]).hex.encode().hex().encode() not in on_disk  # bytea as hex


async def test_a_step_of_an_unknown_workflow_is_refused(store: Store) -> None:
    unknown = uuid.uuid4().hex

    with pytest.raises(StoreError, match=f"unknown workflow {unknown}: its step 'page:0'"):
        await store.record_step(unknown, 0, "page:0", PAGE)

    assert await store.steps(unknown) == []


async def test_bad_indexes_and_names_are_refused(store: Store) -> None:
    workflow_id = await _running(store)
    for index in (-1, True, 1.0):
        with pytest.raises(ValueError, match="a step's index is a whole number"):
            await store.record_step(workflow_id, index, "page:0", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a step's name is non-empty text"):
        await store.record_step(workflow_id, 0, "", {})


async def test_resume_counts_survive_a_restart(
    store_settings: StorageSettings, clock: FakeClock
) -> None:
    async with opened(store_settings, clock=clock, uptime=clock.uptime) as store:
        workflow_id = await _running(store)
    async with opened(store_settings, clock=clock, uptime=clock.uptime) as store:
        [found] = await store.resumable()
        first = await store.note_resume(workflow_id)
        # Resumed by this process now: not offered again, and its record says how often.
        assert await store.resumable() == []
        record = await store.get(workflow_id)
        assert record is not None and record.resumes == 1
    async with opened(store_settings, clock=clock, uptime=clock.uptime) as store:
        second = await store.note_resume(workflow_id)
        stored = await store.finish(
            workflow_id, status=WorkflowStatus.FAILED, result=None, error="gave up"
        )
        [searched] = await store.search(ResultQuery(status=WorkflowStatus.FAILED))

    assert found.resumes == 0
    assert (first, second) == (1, 2)
    assert stored.record.resumes == 2
    assert searched.resumes == 2


async def test_a_resume_of_an_unknown_workflow_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown workflow"):
        await store.note_resume(uuid.uuid4().hex)


async def test_resumable_leaves_out_what_this_process_runs(store: Store) -> None:
    await _running(store)

    assert await store.resumable() == []


async def test_retention_removes_a_workflows_steps_with_it(
    store: Store, store_settings: StorageSettings, clock: FakeClock
) -> None:
    old = make_record(created_at=START_S)
    await store.create(old)
    await store.record_step(old.workflow_id, 0, "page:0", PAGE)
    await store.finish(old.workflow_id, status=WorkflowStatus.COMPLETED, result={"pages": 1})
    await store.mark_delivered(old.workflow_id, "followup")
    kept = await _running(store)
    await store.record_step(kept, 0, "page:0", PAGE)
    clock.advance(31 * DAY_S)

    assert await store.purge() == 1

    assert await store.steps(old.workflow_id) == []
    assert [s.name for s in await store.steps(kept)] == ["page:0"]
    if (root := sqlite_root(store_settings)) is not None:
        assert sorted(p.name for p in (root / STEPS_DIR).iterdir()) == [f"{kept}.steps"]


async def test_finish_keeps_the_steps_until_retention(store: Store) -> None:
    record = make_record(created_at=START_S)
    await store.create(record)
    await store.record_step(record.workflow_id, 0, "page:0", PAGE)
    await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result={"ok": 1})

    assert [s.name for s in await store.steps(record.workflow_id)] == ["page:0"]


@pytest.mark.sqlite_only
async def test_an_index_from_schema_version_3_is_upgraded(
    storage: StorageSettings, clock: FakeClock
) -> None:
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        workflow_id = await _running(store)
        done = await finished(store)
    path = storage.path / "index.sqlite3"
    db = sqlite3.connect(path)
    try:  # what version 3 had: no steps table, no resume count
        db.executescript("ALTER TABLE workflows DROP COLUMN resumes;PRAGMA user_version = 3;")
    finally:
        db.close()

    for _ in range(2):  # the upgrade is idempotent: a second open changes nothing
        async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
            [left] = await store.resumable()
            old = await store.get(done.workflow_id)
            await store.record_step(workflow_id, 0, "page:0", PAGE)
            count = await store.note_resume(workflow_id)
            steps = await store.steps(workflow_id)
        assert left.workflow_id == workflow_id and left.resumes == count - 1
        assert old is not None and old.status is WorkflowStatus.COMPLETED and old.resumes == 0
        assert [s.value for s in steps] == [PAGE]
    db = sqlite3.connect(path)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()
    assert version == SCHEMA_VERSION == 5


@pytest.mark.sqlite_only  # PostgreSQL's: tests/store/test_postgres_store.py
async def test_an_index_from_a_newer_program_is_refused(storage: StorageSettings) -> None:
    # Going forward is an upgrade; going back is refused rather than guessed at.
    storage.path.mkdir()
    db = sqlite3.connect(storage.path / "index.sqlite3")
    try:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        db.close()

    with pytest.raises(StoreError, match=f"index schema version {SCHEMA_VERSION + 1} is newer"):
        await ResultStore.open(storage, maintain=False)


@pytest.mark.sqlite_only  # PostgreSQL's: tests/store/test_postgres_store.py
async def test_a_finished_result_waiting_for_the_disk_is_not_offered_for_resuming(
    storage: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk refuses the result file and the index refuses the finish: the row still says
    # running, but this process holds the outcome; resuming it would run it a second time.
    async with await ResultStore.open(storage) as store:
        workflow_id = await _running(store)
        with sqlite3.connect(storage.path / "index.sqlite3") as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE ON workflows "
                "BEGIN SELECT RAISE(ABORT, 'simulated index failure'); END"
            )

        def full_disk(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", full_disk)
        await store.finish(workflow_id, status=WorkflowStatus.COMPLETED, result={"ok": 1})

        assert store.pending_writes == (workflow_id,)
        assert [r.workflow_id for r in await store.running()] == [workflow_id]
        assert await store.resumable() == []


@pytest.mark.sqlite_only
async def test_steps_an_index_of_version_4_held_are_moved_into_step_files(
    storage: StorageSettings, clock: FakeClock
) -> None:
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        workflow_id = await _running(store)
    path = storage.path / "index.sqlite3"
    db = sqlite3.connect(path)
    try:  # what version 4 had: the steps as rows of the index
        db.executescript(
            "CREATE TABLE workflow_steps (workflow_id TEXT NOT NULL, step_index INTEGER NOT NULL,"
            " name TEXT NOT NULL, value BLOB NOT NULL, recorded_at REAL NOT NULL,"
            " PRIMARY KEY (workflow_id, step_index)); PRAGMA user_version = 4;"
        )
        db.executemany(
            "INSERT INTO workflow_steps VALUES (?, ?, ?, ?, ?)",
            [
                (workflow_id, 0, "plan", b'["https://example.com/a"]', START_S),
                (workflow_id, 1, "page:0", b'{"words": 812}', START_S + 1),
            ],
        )
        db.commit()
    finally:
        db.close()

    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        steps = await store.steps(workflow_id)
        await store.record_step(workflow_id, 2, "page:1", {"words": 3})
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        again = await store.steps(workflow_id)

    assert steps == [
        RecordedStep(0, "plan", ["https://example.com/a"], START_S),
        RecordedStep(1, "page:0", {"words": 812}, START_S + 1),
    ]
    assert [s.name for s in again] == ["plan", "page:0", "page:1"]
    db = sqlite3.connect(path)
    try:
        tables = db.execute("SELECT name FROM sqlite_master WHERE name = 'workflow_steps'")
        assert tables.fetchall() == []
    finally:
        db.close()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("damage", ["torn", "garbage"])
async def test_a_step_torn_by_a_crash_is_not_read_and_the_next_steps_are(
    storage: StorageSettings, clock: FakeClock, damage: str
) -> None:
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        workflow_id = await _running(store)
        for index in range(3):
            await store.record_step(workflow_id, index, f"page:{index}", {"page": index})
    step_file = storage.path / STEPS_DIR / f"{workflow_id}.steps"
    data = step_file.read_bytes()
    if damage == "torn":  # the third frame half-written when the process died
        step_file.write_bytes(data[: len(data) - 7])
    else:  # the end of the file is not a frame at all
        step_file.write_bytes(data + os.urandom(64))

    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        after_crash = [s.name for s in await store.steps(workflow_id)]
        await store.record_step(workflow_id, len(after_crash), "page:2", {"page": 2})
        await store.record_step(workflow_id, len(after_crash) + 1, "page:3", {"page": 3})
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        steps = await store.steps(workflow_id)

    expected_before = ["page:0", "page:1"] if damage == "torn" else ["page:0", "page:1", "page:2"]
    assert after_crash == expected_before
    assert [s.name for s in steps][: len(expected_before)] == expected_before
    assert [s.value for s in steps][-1] == {"page": 3}


@pytest.mark.sqlite_only
async def test_step_files_of_workflows_the_index_does_not_hold_go_at_reconciliation(
    storage: StorageSettings, clock: FakeClock
) -> None:
    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        kept = await _running(store)
        await store.record_step(kept, 0, "page:0", PAGE)
    stray = uuid.uuid4().hex
    (storage.path / STEPS_DIR / f"{stray}.steps").write_bytes(b"left by a purge a crash cut")

    async with await ResultStore.open(storage, clock=clock, uptime=clock.uptime) as store:
        report = await store.reconcile()
        steps = await store.steps(kept)

    assert report.steps_removed == 0  # the open's own reconciliation already removed it
    assert sorted(p.name for p in (storage.path / STEPS_DIR).iterdir()) == [f"{kept}.steps"]
    assert [s.name for s in steps] == ["page:0"]
