"""The outbox's contract, run against both backends, and what only PostgreSQL adds: sharing.

Every test taking `boxes` runs twice: on the SQLite file (`storage.backend: sqlite`, the default)
and on a fresh PostgreSQL database (`postgres`), both opened the way the bot opens them
(`open_outbox(settings)`). A machine without PostgreSQL skips the second run naming why, and
fails it with NOTIFIER_REQUIRE_POSTGRES=1 (CI).

The PostgreSQL-only tests are about several processes on one outbox: two outboxes (two pools, as
two processes have) claiming at once, a holder that lives past its first lease, one killed with
SIGKILL, and two real Fanouts delivering to one HTTP sink.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from notifier.config import Settings
from notifier.errors import StoreError
from notifier.events import Event
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import (
    LAST_ERROR_MAX_CHARS,
    NewNotice,
    Outbox,
    OutboxStatus,
    open_outbox,
)
from notifier.logs import MASK, redactor
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, free_port, wait_until
from notifier.testing.fanout_settings import fast_fanout

from .support import make_notice

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET = "outbox-contract-secret-4f9a"  # added to the redactor by the test that needs it
PENDING, SENT, FAILED, SKIPPED = (
    OutboxStatus.PENDING,
    OutboxStatus.SENT,
    OutboxStatus.FAILED,
    OutboxStatus.SKIPPED,
)


def settings_for(
    tmp_path: Path, dsn: str | None, notifiers: Sequence[dict[str, Any]] = ()
) -> Settings:
    storage: dict[str, Any] = {"path": str(tmp_path / "data")}
    if dsn is not None:
        storage |= {"backend": "postgres", "postgres_dsn": dsn}
    return Settings.model_validate(
        {
            "storage": storage,
            "fanout": fast_fanout(tmp_path),
            "notifiers": list(notifiers),
        }
    )


@dataclass
class Boxes:
    """The outbox under test, opened as the bot opens it; `reopen` closes it and opens it again."""

    settings: Settings
    backend: str
    outbox: Outbox | None = None

    @property
    def box(self) -> Outbox:
        assert self.outbox is not None
        return self.outbox

    async def open(self) -> Outbox:
        self.outbox = await open_outbox(self.settings)
        return self.outbox

    async def reopen(self) -> Outbox:
        await self.close()
        return await self.open()

    async def close(self) -> None:
        if self.outbox is not None:
            outbox, self.outbox = self.outbox, None
            await outbox.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def boxes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Boxes]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    opened = Boxes(settings_for(tmp_path, dsn), request.param)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def queued(*names: str, **notice: Any) -> list[NewNotice]:
    """One notice (completed, a new workflow) owed by each notifier in `names`."""
    shared = make_notice(Event.COMPLETED, **notice)
    return [NewNotice(name, "apprise", shared) for name in names]


def pending_gauge() -> float:
    value = REGISTRY.get_sample_value("notifier_outbox_pending")
    assert value is not None
    return value


# ---------------------------------------------------------------------------------------------
# The contract: both backends


async def test_enqueue_stores_each_notice_once(boxes: Boxes) -> None:
    box = boxes.box
    first = make_notice(Event.FAILED, error="x", estimate_s=12.5)
    items = [NewNotice("ops", "apprise", first), NewNotice("dev", "email", first)]
    created = await box.enqueue(items, now_s=100.0)

    assert [(r.notifier, r.plugin, r.notice) for r in created] == [
        ("ops", "apprise", first),
        ("dev", "email", first),
    ]
    assert created[0].id < created[1].id
    assert [r.idempotency_key for r in created] == [i.key for i in items]
    assert {(r.status, r.attempts, r.next_attempt_at, r.created_at) for r in created} == {
        (PENDING, 0, 100.0, 100.0)
    }
    # Again (a runner re-emitting after a crash), with one new notice: only the new one is queued.
    again = await box.enqueue([*items, *queued("ops")], now_s=101.0)
    assert [r.notifier for r in again] == ["ops"]
    assert again[0].notice != first
    # The same notice twice in one batch is one row.
    twice = queued("ops")
    assert len(await box.enqueue(twice + twice, now_s=102.0)) == 1
    assert await box.enqueue([], now_s=103.0) == []
    assert await box.count(PENDING) == 4


async def test_due_rows_come_oldest_due_first_within_limit_and_exclude(boxes: Boxes) -> None:
    box = boxes.box
    a, b, c, d = await box.enqueue(queued("a", "b", "c", "d"), now_s=100.0)
    for row, at in ((a, 130.0), (b, 110.0), (c, 120.0), (d, 500.0)):
        await box.mark_retry(
            row.id, attempts=1, error="503", next_attempt_at=at, targets={}, now_s=101.0
        )

    assert await box.due(now_s=109.0) == []
    assert [r.id for r in await box.due(now_s=125.0)] == [b.id, c.id]
    assert [r.id for r in await box.due(now_s=200.0, limit=2)] == [b.id, c.id]
    assert [r.id for r in await box.due(now_s=200.0, exclude={b.id})] == [c.id, a.id]
    assert [r.id for r in await box.due(now_s=1000.0)] == [b.id, c.id, a.id, d.id]
    assert await box.next_due_at() == 110.0
    assert await box.next_due_at(exclude={a.id, b.id, c.id}) == 500.0
    assert await box.next_due_at(exclude={a.id, b.id, c.id, d.id}) is None
    assert [r.id for r in await box.pending()] == [a.id, b.id, c.id, d.id]  # oldest first


async def test_a_failed_attempt_waits_for_its_backoff_and_keeps_what_it_learnt(
    boxes: Boxes,
) -> None:
    redactor.add([SECRET])
    box = boxes.box
    (row,) = await box.enqueue(queued("ops"), now_s=100.0)
    targets = {
        "a": {"status": "sent", "target": "json://a", "errors": [], "settled": True},
        "b": {
            "status": "failed",
            "target": "json://b",
            "errors": [f"503 {SECRET}"],
            "settled": False,
        },
    }
    await box.mark_retry(
        row.id,
        attempts=1,
        error=f"HTTP 503 from json://b?token={SECRET} \x00 and more",
        next_attempt_at=104.5,
        targets=targets,
        now_s=101.0,
    )

    stored = await box.get(row.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.next_attempt_at, stored.updated_at) == (
        PENDING,
        1,
        104.5,
        101.0,
    )
    assert stored.last_error is not None
    assert stored.last_error.startswith(f"HTTP 503 from json://b?token={MASK} ")
    assert stored.last_error.endswith(" and more")  # a NUL in an error does not fail the write
    assert SECRET not in json.dumps(stored.targets)
    assert stored.settled_targets == frozenset({"a"})
    assert await box.due(now_s=104.4) == []
    assert [r.id for r in await box.due(now_s=104.5)] == [row.id]

    await box.mark_retry(
        row.id, attempts=2, error="x" * 5000, next_attempt_at=110.0, targets=targets, now_s=105.0
    )
    stored = await box.get(row.id)
    assert stored is not None and stored.last_error is not None
    assert len(stored.last_error) == LAST_ERROR_MAX_CHARS
    assert stored.last_error.endswith("...")


OUTCOMES = [
    pytest.param("sent", SENT, 7.0, "delivered late", id="sent"),
    pytest.param("skipped", SKIPPED, None, "estimate under the threshold", id="skipped"),
    pytest.param("failed", FAILED, None, "400 bad request", id="failed"),
]


async def mark(box: Outbox, outcome: str, row_id: int, text: str) -> None:
    targets = {"t": {"status": "sent", "target": "json://t", "errors": [], "settled": True}}
    if outcome == "sent":
        await box.mark_sent(row_id, attempts=2, targets=targets, now_s=7.0, note=text)
    elif outcome == "skipped":
        await box.mark_skipped(row_id, attempts=2, reason=text, targets=targets, now_s=7.0)
    else:
        await box.mark_failed(row_id, attempts=2, error=text, targets=targets, now_s=7.0)


@pytest.mark.parametrize(("outcome", "status", "sent_at", "text"), OUTCOMES)
async def test_an_outcome_settles_a_row_for_good(
    boxes: Boxes, outcome: str, status: OutboxStatus, sent_at: float | None, text: str
) -> None:
    box = boxes.box
    (row,) = await box.enqueue(queued("ops"), now_s=1.0)
    await mark(box, outcome, row.id, text)

    stored = await box.get(row.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.sent_at, stored.updated_at) == (
        status,
        2,
        sent_at,
        7.0,
    )
    assert stored.last_error == text
    assert stored.settled_targets == frozenset({"t"})
    # A settled row is never due, and later outcomes (a late duplicate send) change nothing.
    assert await box.due(now_s=1e12) == []
    assert await box.next_due_at() is None
    for other in ("sent", "skipped", "failed"):
        await mark(box, other, row.id, "late")
    await box.mark_retry(
        row.id, attempts=9, error="late", next_attempt_at=8.0, targets={}, now_s=8.0
    )
    assert await box.get(row.id) == stored


async def test_a_failed_row_without_targets_keeps_the_ones_it_had(boxes: Boxes) -> None:
    box = boxes.box
    (row,) = await box.enqueue(queued("ops"), now_s=1.0)
    targets = {"t": {"status": "sent", "target": "json://t", "errors": [], "settled": True}}
    await box.mark_retry(
        row.id, attempts=1, error="e", next_attempt_at=2.0, targets=targets, now_s=1.5
    )
    await box.mark_failed(row.id, attempts=1, error="notifier removed", now_s=3.0)
    stored = await box.get(row.id)
    assert stored is not None
    assert (stored.status, stored.settled_targets) == (FAILED, frozenset({"t"}))


async def test_requeue_gives_a_failed_row_a_fresh_budget_and_drops_its_dead_targets(
    boxes: Boxes,
) -> None:
    box = boxes.box
    one, two, three = await box.enqueue(queued("a", "b", "c"), now_s=1.0)
    targets = {
        "ok": {"status": "sent", "target": "json://ok", "errors": [], "settled": True},
        "dead": {"status": "failed", "target": "json://dead", "errors": ["404"], "settled": True},
    }
    await box.mark_failed(one.id, attempts=3, error="failed for good", targets=targets, now_s=2.0)
    await box.mark_failed(two.id, attempts=3, error="gave up", now_s=2.0)

    assert await box.requeue(one.id, now_s=50.0)
    stored = await box.get(one.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.next_attempt_at) == (PENDING, 0, 50.0)
    assert set(stored.targets) == {"ok"}  # delivered stays delivered; the dead one is tried again
    assert [r.id for r in await box.due(now_s=50.0, exclude={three.id})] == [one.id]
    assert not await box.requeue(one.id, now_s=51.0)  # pending now, not failed
    assert not await box.requeue(three.id, now_s=51.0)  # never failed
    assert not await box.requeue(999_999, now_s=51.0)  # no such row
    await box.mark_failed(one.id, attempts=1, error="again", now_s=52.0)
    assert await box.requeue_failed(now_s=60.0) == 2
    assert await box.count(FAILED) == 0
    assert await box.count(PENDING) == 3


async def test_counts_and_the_pending_gauge_follow_every_change(boxes: Boxes) -> None:
    box = boxes.box
    a, b, c, d = await box.enqueue(queued("a", "b", "c", "d"), now_s=1.0)
    await box.refresh_gauge()
    assert pending_gauge() == 4
    start = pending_gauge()
    await box.mark_sent(a.id, attempts=1, targets={}, now_s=2.0)
    await box.mark_skipped(b.id, attempts=1, reason="nothing to say", targets={}, now_s=2.0)
    await box.mark_failed(c.id, attempts=1, error="x", now_s=2.0)
    await box.mark_retry(d.id, attempts=1, error="x", next_attempt_at=9.0, targets={}, now_s=2.0)
    assert pending_gauge() == start - 3
    assert await box.requeue(c.id, now_s=3.0)
    assert pending_gauge() == start - 2
    await box.enqueue(queued("e"), now_s=4.0)
    assert pending_gauge() == start - 1

    assert {s: await box.count(s) for s in OutboxStatus} == {
        PENDING: 3,
        SENT: 1,
        SKIPPED: 1,
        FAILED: 0,
    }
    await box.refresh_gauge()
    assert pending_gauge() == 3


async def test_pending_rows_of_notifiers_that_are_gone_are_failed_saying_so(boxes: Boxes) -> None:
    box = boxes.box
    kept, gone, in_flight = await box.enqueue(queued("ops", "old", "old2"), now_s=1.0)
    failed = await box.fail_pending_except(
        {"ops"},
        error="notifier {notifier!r} is not configured any more; `outbox retry {id}`",
        now_s=5.0,
        exclude={in_flight.id},
    )

    assert failed == [gone.id]
    stored = await box.get(gone.id)
    assert stored is not None
    assert (stored.status, stored.last_error, stored.updated_at) == (
        FAILED,
        f"notifier 'old' is not configured any more; `outbox retry {gone.id}`",
        5.0,
    )
    assert [r.id for r in await box.rows(status=PENDING)] == [in_flight.id, kept.id]


async def test_rows_list_newest_first_by_status_and_notifier(boxes: Boxes) -> None:
    box = boxes.box
    a, b, c = await box.enqueue([*queued("ops", "dev"), *queued("ops")], now_s=1.0)
    await box.mark_sent(b.id, attempts=1, targets={}, now_s=2.0)

    assert [r.id for r in await box.rows()] == [c.id, b.id, a.id]
    assert [r.id for r in await box.rows(limit=2)] == [c.id, b.id]
    assert [r.id for r in await box.rows(status=SENT)] == [b.id]
    assert [r.id for r in await box.rows(notifier="ops", status=PENDING, limit=None)] == [
        c.id,
        a.id,
    ]
    assert await box.rows(notifier="nobody") == []
    assert await box.get(999_999) is None
    assert await box.get(a.id) == a


async def test_rows_survive_a_reopen_and_are_sent_by_the_next_process(boxes: Boxes) -> None:
    box = boxes.box
    a, b, c = await box.enqueue(queued("a", "b", "c"), now_s=1.0)
    targets = {"t": {"status": "failed", "target": "json://t", "errors": ["503"], "settled": False}}
    await box.mark_retry(
        a.id, attempts=1, error="503", next_attempt_at=2.0, targets=targets, now_s=1.5
    )
    await box.mark_sent(b.id, attempts=1, targets={}, now_s=1.5)
    before = await box.rows(limit=None)

    box = await boxes.reopen()

    assert await box.rows(limit=None) == before
    # What the old process had not finished (c was handed to it by `enqueue`) is the new one's.
    assert [r.id for r in await box.due(now_s=3.0)] == [c.id, a.id]  # c was due first
    assert [r.id for r in await box.pending()] == [a.id, c.id]


# ---------------------------------------------------------------------------------------------
# The factory


async def test_the_default_backend_is_the_sqlite_file(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, None)
    async with await open_outbox(settings) as box:
        assert type(box) is Outbox
        assert box.path == tmp_path / "outbox.sqlite3"
    assert (tmp_path / "outbox.sqlite3").is_file()


def test_the_postgres_outbox_overrides_every_public_method_of_the_sqlite_one() -> None:
    """It is an `Outbox` for the code typed against that class; a method it inherited would run
    the SQLite code on attributes it does not have."""
    from notifier.fanout.outbox_postgres import PostgresOutbox

    public = {name for name in vars(Outbox) if not name.startswith("_")}
    assert {"open", "enqueue", "due", "mark_sent", "requeue", "close"} <= public
    assert sorted(public - set(vars(PostgresOutbox))) == []  # (__aenter__/__aexit__ call close)


BLOCK_PSYCOPG = """
import asyncio, importlib.abc, sys

class NoPsycopg(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("psycopg", "psycopg_pool", "psycopg_binary"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoPsycopg())
import notifier.cli.outbox, notifier.fanout.dispatch
from notifier.config import Settings
from notifier.errors import ConfigError
from notifier.fanout.outbox import Outbox, open_outbox

async def main(folder):
    plain = Settings.model_validate({"storage": {"path": folder}})
    box = await open_outbox(plain)
    print(type(box).__name__, type(box) is Outbox)
    await box.close()
    shared = Settings.model_validate(
        {"storage": {"path": folder, "backend": "postgres", "postgres_dsn": "host=127.0.0.1"}}
    )
    try:
        await open_outbox(shared)
    except ConfigError as error:
        print(error)

asyncio.run(main(sys.argv[1]))
print(sorted(m for m in sys.modules if m.startswith("psycopg")))
"""


async def test_without_psycopg_the_sqlite_outbox_works_and_postgres_says_what_is_missing(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BLOCK_PSYCOPG,
        str(tmp_path / "data"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines() == [
        "Outbox True",
        "storage.backend: postgres needs the postgres extra (No module named 'psycopg'): "
        "pip install 'nextcord-notifier[postgres]'",
        "[]",
    ]


# ---------------------------------------------------------------------------------------------
# PostgreSQL only: one outbox, several processes


async def test_an_unreachable_server_is_a_store_error_naming_it_but_not_the_password() -> None:
    from notifier.fanout.outbox_postgres import PostgresOutbox

    port = free_port()
    dsn = f"host=127.0.0.1 port={port} dbname=notices user=bot password=pw-{SECRET}"
    with pytest.raises(StoreError) as caught:
        await PostgresOutbox.open(dsn, connect_timeout_s=2)
    message = str(caught.value)
    assert message.startswith(f"cannot open the outbox in PostgreSQL at 127.0.0.1:{port}/notices: ")
    assert SECRET not in message


async def fetch(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        cursor = await connection.execute(sql, params)
        return await cursor.fetchall()


async def test_migrations_run_once_under_a_lock_and_a_newer_schema_is_refused(
    postgres_dsn: str,
) -> None:
    from notifier.fanout.outbox_postgres import (
        OUTBOX_MIGRATIONS,
        SCHEMA_VERSIONS_TABLE,
        PostgresOutbox,
    )

    # Two processes starting at once: both wait for one migration, neither fails.
    first, second = await asyncio.gather(
        PostgresOutbox.open(postgres_dsn), PostgresOutbox.open(postgres_dsn)
    )
    await first.close()
    await second.close()
    versions = await fetch(postgres_dsn, f"SELECT component, version FROM {SCHEMA_VERSIONS_TABLE}")
    assert versions == [("outbox", len(OUTBOX_MIGRATIONS))]

    await fetch(
        postgres_dsn,
        f"UPDATE {SCHEMA_VERSIONS_TABLE} SET version = %s WHERE component = 'outbox' RETURNING 1",
        len(OUTBOX_MIGRATIONS) + 1,
    )
    with pytest.raises(StoreError, match=r"schema version 2, newer than this notifier knows \(1\)"):
        await PostgresOutbox.open(postgres_dsn)


async def seed(dsn: str, count: int, notifier: str = "hook") -> list[int]:
    """`count` pending notices queued by a process that has since stopped (claims given back)."""
    from notifier.fanout.outbox_postgres import PostgresOutbox

    box = await PostgresOutbox.open(dsn)
    try:
        rows = await box.enqueue(
            [NewNotice(notifier, "apprise", make_notice()) for _ in range(count)], now_s=1.0
        )
    finally:
        await box.close()
    return [r.id for r in rows]


async def test_two_outboxes_claiming_at_once_never_get_the_same_row(postgres_dsn: str) -> None:
    from notifier.fanout.outbox_postgres import PostgresOutbox

    ids = await seed(postgres_dsn, 150)
    first, second = await asyncio.gather(
        PostgresOutbox.open(postgres_dsn), PostgresOutbox.open(postgres_dsn)
    )

    async def take_all(box: Outbox) -> list[int]:
        """Poll like the Fanout's retry loop: small batches, rows in hand passed as `exclude`."""
        taken: list[int] = []
        while rows := await box.due(now_s=1e12, limit=7, exclude=set(taken)):
            taken += [r.id for r in rows]
        return taken

    try:
        mine, theirs = await asyncio.gather(take_all(first), take_all(second))
        assert not set(mine) & set(theirs)
        assert sorted(mine + theirs) == sorted(ids)
        assert len(set(mine)) == len(mine)
        # Each sees only its own rows as anything to send or wake for.
        assert {r.id for r in await first.pending()} == set(mine)
        assert await first.next_due_at(exclude=set(mine)) is None
        assert await first.fail_pending_except((), error="gone", now_s=2.0, exclude=mine) == []
    finally:
        await first.close()
        await second.close()


async def test_a_living_holder_keeps_its_rows_past_the_lease_and_gives_them_back_at_close(
    postgres_dsn: str,
) -> None:
    from notifier.fanout.outbox_postgres import OUTBOX_TABLE, PostgresOutbox

    lease_s = 1.5
    holder = await PostgresOutbox.open(postgres_dsn, lease_s=lease_s)
    other = await PostgresOutbox.open(postgres_dsn, lease_s=lease_s)
    try:
        rows = await holder.enqueue(queued("a", "b"), now_s=1.0)
        ((first_until,),) = await fetch(
            postgres_dsn, f"SELECT max(claimed_until) FROM {OUTBOX_TABLE}"
        )

        async def first_lease_over() -> bool:
            ((over,),) = await fetch(postgres_dsn, "SELECT clock_timestamp() > %s", first_until)
            return bool(over)

        await wait_until(first_lease_over, what="the holder's first lease to run out")
        assert await other.due(now_s=1e12) == []
        assert await other.pending() == []
        assert await other.next_due_at() is None
        holders = await fetch(postgres_dsn, f"SELECT DISTINCT claimed_by FROM {OUTBOX_TABLE}")
        assert holders == [(holder.claimer,)]
    finally:
        await holder.close()
    assert sorted(r.id for r in await other.due(now_s=1e12)) == sorted(r.id for r in rows)
    await other.close()


HOLDER_THEN_HANG = """
import asyncio, json, sys
from notifier.events import Event, Notice
from notifier.fanout.outbox import NewNotice
from notifier.fanout.outbox_postgres import PostgresOutbox

async def main(dsn):
    box = await PostgresOutbox.open(dsn, lease_s=1.0)
    rows = await box.due(now_s=1e12)
    print(json.dumps({"claimer": box.claimer, "ids": [r.id for r in rows]}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1]))
"""


async def test_rows_of_a_holder_killed_mid_send_are_claimed_again_after_its_lease(
    postgres_dsn: str,
) -> None:
    from notifier.fanout.outbox_postgres import OUTBOX_TABLE, PostgresOutbox

    ids = await seed(postgres_dsn, 3)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER_THEN_HANG,
        postgres_dsn,
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        claimed = json.loads(line)
        assert sorted(claimed["ids"]) == sorted(ids)
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()
    dead_claims = await fetch(
        postgres_dsn, f"SELECT claimed_by, max(claimed_until) FROM {OUTBOX_TABLE} GROUP BY 1"
    )
    assert [holder for holder, _ in dead_claims] == [claimed["claimer"]]
    dead_until = dead_claims[0][1]

    lease_s = 5.0
    taker = await PostgresOutbox.open(postgres_dsn, lease_s=lease_s)
    try:
        taken: list[int] = []

        async def claimed_again() -> bool:
            taken.extend(r.id for r in await taker.due(now_s=1e12, exclude=set(taken)))
            return len(taken) == len(ids)

        await wait_until(claimed_again, what="the dead holder's rows claimed again")
        assert sorted(taken) == sorted(ids)
        claims = await fetch(
            postgres_dsn,
            f"SELECT claimed_by, min(claimed_until) - make_interval(secs => %s) >= %s"
            f" FROM {OUTBOX_TABLE} GROUP BY 1",
            lease_s,
            dead_until,
        )
        assert claims == [(taker.claimer, True)]  # taken after the lease
    finally:
        await taker.close()


async def test_two_fanouts_on_one_outbox_send_each_notice_exactly_once(
    postgres_dsn: str,
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
) -> None:
    sink = await sinks()
    entries = [
        {
            "name": "hook",
            "plugin": "apprise",
            "on": ["completed"],
            "options": {"urls": [sink.json_url()]},
        }
    ]
    settings = settings_for(tmp_path, postgres_dsn, entries)
    backlog = await seed(postgres_dsn, 30)  # left pending by a process that stopped
    gateway, worker = await asyncio.gather(
        Fanout.open(settings, context, poll_interval_s=0.05),
        Fanout.open(settings, context, poll_interval_s=0.05),
    )
    try:
        # Both poll every 50 ms and both emit, interleaved.
        await asyncio.gather(
            *(
                fanout.emit(make_notice(Event.COMPLETED))
                for _ in range(10)
                for fanout in (gateway, worker)
            )
        )

        async def all_sent() -> bool:
            return await gateway.outbox.count(SENT) == len(backlog) + 20

        await wait_until(all_sent, what="every notice sent")
        rows = await gateway.outbox.rows(limit=None)
    finally:
        await gateway.close(drain_timeout_s=0.5)
        await worker.close(drain_timeout_s=0.5)

    assert {r.status for r in rows} == {SENT}
    assert Counter(sink.keys()) == Counter(r.idempotency_key for r in rows)
    assert all(r.ok for r in sink.received)


async def test_the_cli_lists_and_retries_the_shared_outbox_in_postgres(
    tmp_path: Path, postgres_dsn: str
) -> None:
    # `notifier outbox` with storage.backend: postgres reads the table every process shares,
    # not a file (there is none), and needs no bot's lock to requeue.
    from .test_outbox import run

    settings = settings_for(tmp_path, postgres_dsn)
    async with await open_outbox(settings) as box:
        [row] = await box.enqueue(queued("ops"), now_s=1.0)
        await mark(box, "failed", row.id, "refused by the receiver")
    assert not (tmp_path / "outbox.sqlite3").exists()

    code, out, _ = await run(settings, "outbox", "list", "--status", "failed")
    assert code == 0 and "refused by the receiver" in out
    assert out.splitlines()[-1] == "(1 shown; 0 pending, 0 sent, 1 failed, 0 skipped)"
    code, out, _ = await run(settings, "outbox", "retry", str(row.id))
    assert code == 0
    assert out.strip().endswith("the running bots and workers send it within seconds")
    async with await open_outbox(settings) as box:
        again = await box.get(row.id)
    assert again is not None and again.status is OutboxStatus.PENDING
