"""SQLiteWriter against real SQLite files (WAL): group commits, per-write atomicity inside a shared
transaction, `latest_of` supersession, close, pragmas, and a free event loop.

Every check of what is committed goes through a separate plain sqlite3 connection, as a reader of
the file would see it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier.groupcommit.sqlite_writer import SQLiteWriter, Written

SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    qty INTEGER NOT NULL DEFAULT 0 CHECK (qty >= 0)
);
CREATE TABLE progress (id INTEGER PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE progress_log (id INTEGER NOT NULL, value INTEGER NOT NULL);
CREATE TRIGGER progress_logged AFTER UPDATE ON progress BEGIN
    INSERT INTO progress_log (id, value) VALUES (NEW.id, NEW.value);
END;
CREATE TRIGGER poison BEFORE INSERT ON items WHEN NEW.name = 'poison' BEGIN
    SELECT RAISE(ROLLBACK, 'poisoned');
END;
INSERT INTO progress (id, value) VALUES (1, 0), (2, 0);
"""

INSERT = "INSERT INTO items (name, qty) VALUES (?, ?)"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "writer.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        conn.executescript(SCHEMA)
    finally:
        conn.close()
    return path


@pytest.fixture
async def writer(db: Path) -> AsyncIterator[SQLiteWriter]:
    opened = await SQLiteWriter.open(db, ["busy_timeout = 5000"], name="test")
    yield opened
    await opened.close()


@pytest.fixture
def reader(db: Path) -> Iterator[sqlite3.Connection]:
    """A separate plain connection in autocommit mode: every SELECT sees the latest commit."""
    conn = sqlite3.connect(db, isolation_level=None)
    yield conn
    conn.close()


async def together(*writes: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """`asyncio.gather` that fails the test instead of hanging if a write is never answered."""
    async with asyncio.timeout(10):
        return list(await asyncio.gather(*writes, return_exceptions=return_exceptions))


async def failure(write: Awaitable[Any]) -> Exception:
    """The exception `write` raised to its caller; a value returned instead fails the test."""
    try:
        value = await write
    except Exception as exc:
        return exc
    raise AssertionError(f"expected an error, got {value!r}")


def names(reader: sqlite3.Connection) -> list[str]:
    return [name for (name,) in reader.execute("SELECT name FROM items ORDER BY name")]


async def test_concurrent_writes_are_grouped_and_visible_once_returned(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    async def write(i: int) -> Written:
        await asyncio.sleep(0.001 * (i % 4))  # arrive in a few waves, some during a commit
        written = await writer.execute(INSERT, (f"n{i:03}", i))
        # Committed by the time the call returns: another connection sees it right away.
        assert reader.execute("SELECT qty FROM items WHERE name = ?", (f"n{i:03}",)).fetchall() == [
            (i,)
        ]
        return written

    results = await together(*(write(i) for i in range(200)))

    assert results == [Written(1, [])] * 200
    assert names(reader) == [f"n{i:03}" for i in range(200)]
    assert 1 <= writer.groups < 50


async def test_constraint_violation_fails_only_its_own_write(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    await writer.execute(INSERT, ("taken", 0))
    groups_before = writer.groups

    results = await together(
        writer.execute(INSERT, ("a", 1)),
        failure(writer.execute(INSERT, ("taken", 2))),  # UNIQUE
        writer.execute(INSERT, ("b", 2)),
        failure(writer.execute(INSERT, ("negative", -1))),  # CHECK
        writer.execute(INSERT, ("c", 3)),
    )

    assert writer.groups == groups_before + 1  # one shared transaction for all five
    assert results[0] == Written(1, [])
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert "UNIQUE" in str(results[1])
    assert results[2] == Written(1, [])
    assert isinstance(results[3], sqlite3.IntegrityError)
    assert "CHECK" in str(results[3])
    assert results[4] == Written(1, [])
    assert names(reader) == ["a", "b", "c", "taken"]
    assert reader.execute("SELECT qty FROM items WHERE name = 'taken'").fetchone() == (0,)


async def test_failing_unit_is_rolled_back_alone(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute(INSERT, ("half", 1))
        raise ValueError("changed my mind")

    results = await together(
        writer.execute(INSERT, ("before", 1)),
        failure(writer.run(half_done)),
        writer.execute(INSERT, ("after", 2)),
    )

    assert writer.groups == 3  # a run() unit gets a transaction of its own
    assert results[0] == Written(1, [])
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "changed my mind"
    assert results[2] == Written(1, [])
    assert names(reader) == ["after", "before"]


async def test_run_returns_the_units_value_with_all_its_statements_committed(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    def two_statements(conn: sqlite3.Connection) -> int:
        conn.execute(INSERT, ("x", 1))
        conn.execute(INSERT, ("y", 2))
        (total,) = conn.execute("SELECT sum(qty) FROM items").fetchone()
        return int(total)

    assert await writer.run(two_statements) == 3
    assert names(reader) == ["x", "y"]


async def test_latest_of_runs_only_the_newest_queued_write(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    started = threading.Event()

    def busy(conn: sqlite3.Connection) -> None:
        started.set()
        time.sleep(0.2)

    blocker = asyncio.create_task(writer.run(busy))
    assert await asyncio.to_thread(started.wait, 5)
    updates = [
        asyncio.create_task(
            writer.execute(
                "UPDATE progress SET value = ? WHERE id = 1", (value,), latest_of=("p", 1)
            )
        )
        for value in (10, 20, 30)
    ]
    await asyncio.sleep(0)  # all three are queued now
    assert not blocker.done()  # ... behind the running write

    results = await together(*updates)
    await blocker

    assert results == [Written(1, [])] * 3  # every caller returns, with the result of the newest
    assert reader.execute("SELECT value FROM progress WHERE id = 1").fetchone() == (30,)
    # The trigger logs each UPDATE that actually ran: the superseded two never did.
    assert reader.execute("SELECT id, value FROM progress_log").fetchall() == [(1, 30)]
    assert writer.groups == 2


async def test_latest_of_does_not_merge_other_keys_or_unkeyed_writes(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    update = "UPDATE progress SET value = ? WHERE id = ?"
    results = await together(
        writer.execute(update, (1, 1), latest_of=("p", 1)),
        writer.execute(update, (2, 2), latest_of=("p", 2)),
        writer.execute(update, (3, 1)),
        writer.execute(update, (4, 1)),
    )

    assert results == [Written(1, [])] * 4
    assert reader.execute("SELECT id, value FROM progress_log ORDER BY rowid").fetchall() == [
        (1, 1),
        (2, 2),
        (1, 3),
        (1, 4),
    ]


async def test_write_that_ends_the_shared_transaction_fails_alone(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    def rolls_back(conn: sqlite3.Connection) -> None:
        conn.execute(INSERT, ("rolled", 1))
        conn.execute("ROLLBACK")

    results = await together(
        writer.execute(INSERT, ("a", 1)),
        failure(writer.run(rolls_back)),
        writer.execute(INSERT, ("b", 2)),
        failure(writer.execute(INSERT, ("a", 3))),  # UNIQUE against the first write of the group
        writer.execute(INSERT, ("c", 3)),
    )

    assert writer.groups == 3  # a run() unit gets a transaction of its own
    assert results[0] == Written(1, [])
    assert isinstance(results[1], sqlite3.Error)
    assert results[2] == Written(1, [])
    assert isinstance(results[3], sqlite3.IntegrityError)
    assert results[4] == Written(1, [])
    assert names(reader) == ["a", "b", "c"]  # each once, and nothing of the failed unit
    assert reader.execute("SELECT qty FROM items WHERE name = 'a'").fetchone() == (1,)


async def test_trigger_rolling_back_the_transaction_fails_only_its_write(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    results = await together(
        writer.execute(INSERT, ("a", 1)),
        writer.execute(INSERT, ("b", 2)),
        failure(
            writer.execute(INSERT, ("poison", 3))
        ),  # RAISE(ROLLBACK): ends the shared transaction
        writer.execute(INSERT, ("c", 4), latest_of="c"),
        writer.execute("UPDATE items SET qty = qty + 100 WHERE name IN ('a', 'b')"),
    )

    assert writer.groups == 1
    assert results[0] == Written(1, [])
    assert results[1] == Written(1, [])
    assert isinstance(results[2], sqlite3.IntegrityError)
    assert "poisoned" in str(results[2])
    assert results[3] == Written(1, [])
    assert results[4] == Written(2, [])
    # Rerun one by one: every good write committed exactly once.
    assert reader.execute("SELECT name, qty FROM items ORDER BY name").fetchall() == [
        ("a", 101),
        ("b", 102),
        ("c", 4),
    ]


async def test_returning_rows_and_rowcount(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    first = await writer.execute(f"{INSERT} RETURNING id, name, qty", ("a", 1))
    assert first == Written(1, [(1, "a", 1)])

    grouped = await together(
        writer.execute(f"{INSERT} RETURNING name, qty", ("b", 2)),
        writer.execute(f"{INSERT} RETURNING name, qty", ("c", 3)),
    )
    assert grouped == [Written(1, [("b", 2)]), Written(1, [("c", 3)])]

    updated = await writer.execute("UPDATE items SET qty = qty * 10 WHERE qty > 0")
    assert updated == Written(3, [])

    returned = await writer.execute("UPDATE items SET qty = qty + 1 RETURNING name, qty")
    assert returned.rowcount == 3
    assert sorted(returned.rows) == [("a", 11), ("b", 21), ("c", 31)]

    nothing = await writer.execute("DELETE FROM items WHERE name = 'missing'")
    assert nothing == Written(0, [])
    assert reader.execute("SELECT sum(qty) FROM items").fetchone() == (63,)


async def test_close_waits_for_queued_writes_then_refuses_new_ones(
    db: Path, reader: sqlite3.Connection
) -> None:
    writer = await SQLiteWriter.open(db, ["busy_timeout = 5000"], name="closing")
    tasks = [asyncio.create_task(writer.execute(INSERT, (f"q{i:02}", i))) for i in range(50)]
    await asyncio.sleep(0)  # let the tasks start: their writes are queued, none committed yet

    await writer.close()

    # Committed before close() returned.
    assert reader.execute("SELECT count(*) FROM items").fetchone() == (50,)
    assert await together(*tasks) == [Written(1, [])] * 50
    with pytest.raises(sqlite3.ProgrammingError):
        await writer.execute(INSERT, ("late", 1))
    with pytest.raises(sqlite3.ProgrammingError):
        await writer.run(lambda conn: None)
    await writer.close()  # a second close is harmless
    assert names(reader) == [f"q{i:02}" for i in range(50)]


async def test_busy_timeout_pragma_applies_to_the_writer_connection(
    db: Path, reader: sqlite3.Connection
) -> None:
    # Both differ from sqlite3.connect's default (5 s), which would otherwise wait the lock out.
    patient = await SQLiteWriter.open(db, ["busy_timeout = 5000"], name="patient")
    impatient = await SQLiteWriter.open(db, ["busy_timeout = 0"], name="impatient")
    locked = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.5)
            conn.execute("COMMIT")
        finally:
            conn.close()

    holder = asyncio.create_task(asyncio.to_thread(hold_lock))
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        # Without its pragma this write would wait for the lock and succeed once it is released.
        error = await failure(impatient.execute(INSERT, ("impatient", 1)))
        assert isinstance(error, sqlite3.OperationalError)
        assert "locked" in str(error)
        assert not holder.done()  # it failed while the lock was held, without waiting it out

        # Still locked: this one waits for the lock, then commits.
        assert await together(patient.execute(INSERT, ("patient", 2))) == [Written(1, [])]
    finally:
        await holder
        await patient.close()
        await impatient.close()

    assert names(reader) == ["patient"]


async def test_event_loop_runs_while_the_writer_works(writer: SQLiteWriter) -> None:
    ticks = [0]

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    def slow(conn: sqlite3.Connection) -> int:
        before = ticks[0]
        time.sleep(0.3)
        return ticks[0] - before

    task = asyncio.create_task(ticker())
    try:
        progressed: Any = await writer.run(slow)
    finally:
        task.cancel()
    assert progressed > 5  # the loop kept ticking while the unit held the writer thread


async def test_unit_committing_the_shared_transaction_does_not_misreport_others(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    def commits(conn: sqlite3.Connection) -> None:
        conn.execute(INSERT, ("b", 2))
        conn.execute("COMMIT")

    results = await together(
        writer.execute(INSERT, ("a", 1)), writer.run(commits), return_exceptions=True
    )

    committed = names(reader)
    # Whatever a caller was told must match the file: success iff its row is there.
    assert (results[0] == Written(1, [])) == ("a" in committed)


SYNC_LEVEL = "PRAGMA synchronous"  # as a statement: the level the commit it is part of uses


def _level(written: Written) -> int:
    [(level,)] = written.rows
    return int(level)


async def test_writes_that_need_no_fsync_skip_it_unless_grouped_with_one_that_does(
    db: Path, reader: sqlite3.Connection
) -> None:
    writer = await SQLiteWriter.open(db, ["synchronous = FULL"], name="test")
    try:
        relaxed = await writer.execute(SYNC_LEVEL, durable=False)
        durable = await writer.execute(SYNC_LEVEL)
        mixed = await together(
            writer.execute(SYNC_LEVEL, durable=False),
            writer.execute(INSERT, ("grouped", 1)),
            writer.execute(SYNC_LEVEL, durable=False),
        )
        after = await writer.execute(SYNC_LEVEL)
        relaxed_write = await writer.execute(INSERT, ("relaxed", 2), durable=False)
    finally:
        await writer.close()

    assert _level(relaxed) == 1  # NORMAL: in WAL mode, a commit without fsync
    assert _level(durable) == 2  # FULL, the level the pragmas gave
    assert [_level(mixed[0]), _level(mixed[2])] == [2, 2]  # one durable write: all fsynced
    assert _level(after) == 2  # the connection's own level is back
    assert relaxed_write.rowcount == 1
    assert reader.execute("SELECT name, qty FROM items ORDER BY id").fetchall() == [
        ("grouped", 1),
        ("relaxed", 2),
    ]


async def test_a_connection_below_normal_is_never_raised_by_a_relaxed_write(db: Path) -> None:
    writer = await SQLiteWriter.open(db, ["synchronous = OFF"], name="test")
    try:
        relaxed = await writer.execute(SYNC_LEVEL, durable=False)
        durable = await writer.execute(SYNC_LEVEL)
    finally:
        await writer.close()

    assert (_level(relaxed), _level(durable)) == (0, 0)


async def test_a_relaxed_write_superseded_by_a_durable_one_is_fsynced(
    writer: SQLiteWriter, reader: sqlite3.Connection
) -> None:
    update = "UPDATE progress SET value = ? WHERE id = 1"
    outcomes = await together(
        writer.execute(update, (1,), latest_of="p1", durable=False),
        writer.execute(update, (2,), latest_of="p1"),  # replaces the queued one
        writer.execute(SYNC_LEVEL, durable=False),
    )

    assert _level(outcomes[2]) == 2  # the group held a durable write
    assert reader.execute("SELECT value FROM progress WHERE id = 1").fetchone() == (2,)
