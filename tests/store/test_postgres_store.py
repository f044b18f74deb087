"""What only the PostgreSQL store has to show (the behaviour both backends share is the contract
suite: the test_store_*.py files run on both).

- The schema: migrations are idempotent and safe when several stores start at once; a database
  newer than the program is refused in words; a store that does not maintain (the CLI) refuses a
  missing or older schema, asking for ``notifier db migrate``; another migration set (the outbox,
  later) gets a version row of its own.
- PostgreSQL away: restarted while a finish is in flight (a throwaway cluster of the test's own,
  never the shared server), or refusing connections: the result is served from memory, lands
  once the server is back, and nothing is written twice; a delivery recorded meanwhile lands
  with it. A finish the database refuses is not offered for resuming.
- Two processes finishing one workflow: the first result stands.
- The DSN's password is in no log line and no error.
- Retention's clock check, and reconciliation (nothing to do), on PostgreSQL.
- psycopg is not imported by the parts of the bot that run without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Final

import psycopg
import pytest
from psycopg import sql as pg_sql

from notifier.config import StorageSettings
from notifier.errors import StoreError
from notifier.records import DeliveryState, WorkflowStatus
from notifier.schema_migrations import VERSION_TABLE
from notifier.store import ResultQuery, Store
from notifier.store.postgres import (
    STORE_SCHEMA,
    Migration,
    MigrationSet,
    PostgresStore,
    SchemaNewer,
    migrate,
)
from notifier.testing import wait_until
from notifier.testing.loopback import free_port
from notifier.testing.postgres import (
    PostgresServer,
    PostgresUnavailable,
    ThrowawayCluster,
    fresh_database,
)
from notifier.testing.processes import child_env
from notifier.testing.pytest_plugin import no_postgres

from .support import (
    DAY_S,
    EXAMPLE_RESULT,
    FakeClock,
    finished,
    make_record,
    metric,
    sql,
    stored_bytes,
)

PASSWORD: Final = "pg-pw-4d9a1-never-logged"  # trust auth ignores it; nothing may show it
LATEST: Final = STORE_SCHEMA.latest


def _settings(dsn: str, **fields: Any) -> StorageSettings:
    return StorageSettings.model_validate(
        {
            "backend": "postgres",
            "postgres_dsn": dsn,
            "write_retry_initial": 0.01,
            "write_retry_max": 0.05,
            **fields,
        }
    )


@pytest.fixture
def settings(postgres_dsn: str) -> StorageSettings:
    """A fresh database of this test's own, reached with a DSN that carries a password."""
    return _settings(f"{postgres_dsn} password={PASSWORD}")


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def pg_log(log_lines: list[str]) -> Iterator[list[str]]:
    """Every log line: loguru's (the store's) and the standard library's (psycopg's pool),
    at every level."""
    handler = _Lines(log_lines)
    psycopg_logger = logging.getLogger("psycopg")
    level = psycopg_logger.level
    psycopg_logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    yield log_lines
    logging.getLogger().removeHandler(handler)
    psycopg_logger.setLevel(level)


class Hook:
    """on_storage_error: what the store said, and what a reader got at that moment."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException]] = []
        self.store: Store | None = None
        self.pending_then: tuple[str, ...] = ()
        self.read_then: dict[str, Any] | None = None
        self.record_then: Any = None

    async def __call__(self, workflow_id: str, exc: BaseException) -> None:
        self.calls.append((workflow_id, exc))
        assert self.store is not None
        self.pending_then = self.store.pending_writes  # before any await: nothing moved yet
        self.read_then = await self.store.read_result(workflow_id)
        self.record_then = await self.store.get(workflow_id)


async def _results_rows(settings: StorageSettings, workflow_id: str) -> int:
    assert settings.postgres_dsn is not None
    async with await psycopg.AsyncConnection.connect(
        settings.postgres_dsn.get_secret_value()
    ) as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM results WHERE workflow_id = %s", [workflow_id]
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


# -- the schema ------------------------------------------------------------------------------


async def test_a_schema_newer_than_the_program_is_refused_in_words(
    settings: StorageSettings,
) -> None:
    async with await PostgresStore.open(settings) as store:
        kept = await finished(store)
    await sql(
        settings, f"UPDATE {VERSION_TABLE} SET version = %s WHERE component = 'store'", LATEST + 1
    )

    for maintain in (True, False):
        with pytest.raises(SchemaNewer) as refused:
            await PostgresStore.open(settings, maintain=maintain)
        assert str(refused.value) == (
            f"database schema version {LATEST + 1} is newer than this program's {LATEST}: "
            "upgrade the program"
        )
    await sql(
        settings, f"UPDATE {VERSION_TABLE} SET version = %s WHERE component = 'store'", LATEST
    )
    async with await PostgresStore.open(settings, maintain=False) as store:
        assert (await store.read_result(kept.workflow_id))["result"] == EXAMPLE_RESULT


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        pytest.param(None, "the database has no store schema yet", id="never-migrated"),
        pytest.param(
            f"UPDATE {VERSION_TABLE} SET version = 0",
            f"database schema version 0 of store is older than this program's {LATEST}",
            id="older",
        ),
    ],
)
async def test_without_maintenance_a_missing_or_older_schema_asks_for_db_migrate(
    settings: StorageSettings, damage: str | None, words: str
) -> None:
    if damage is not None:
        async with await PostgresStore.open(settings):
            pass
        await sql(settings, damage)

    with pytest.raises(StoreError) as refused:
        await PostgresStore.open(settings, maintain=False)

    assert words in str(refused.value)
    assert str(refused.value).endswith("run `notifier db migrate`")


async def test_stores_starting_at_once_migrate_once_and_keep_what_is_stored(
    settings: StorageSettings,
) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(settings) for _ in range(4)))
    try:
        kept = await finished(stores[0])
    finally:
        for store in stores:
            await store.close()
    async with await PostgresStore.open(settings) as again:  # a later start: nothing to do
        assert (await again.read_result(kept.workflow_id))["result"] == EXAMPLE_RESULT
    assert settings.postgres_dsn is not None
    async with await psycopg.AsyncConnection.connect(
        settings.postgres_dsn.get_secret_value()
    ) as connection:
        # Other parts' sets may be registered in this process too (the job queue's, once
        # notifier.distributed is imported): the store's row is what this test is about.
        cursor = await connection.execute(
            f"SELECT component, version FROM {VERSION_TABLE} WHERE component = 'store'"
        )
        assert await cursor.fetchall() == [("store", LATEST)]


async def test_another_migration_set_has_a_version_of_its_own(settings: StorageSettings) -> None:
    first = Migration(
        1,
        "notices waiting to be sent",
        'CREATE TABLE example_outbox (id bigint PRIMARY KEY, workflow_id text COLLATE "C" '
        "REFERENCES workflows (workflow_id) ON DELETE CASCADE)",
    )
    second = Migration(2, "when a notice was sent", "ALTER TABLE example_outbox ADD sent_at float8")
    outbox_v1 = MigrationSet("example_outbox", (first,), requires=("store",))
    outbox_v2 = MigrationSet("example_outbox", (first, second), requires=("store",))
    assert settings.postgres_dsn is not None
    dsn = settings.postgres_dsn.get_secret_value()

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        # Given out of order: the set that needs the store's tables comes after them.
        applied = await migrate(connection, [outbox_v1, STORE_SCHEMA])
        again = await migrate(connection, [STORE_SCHEMA, outbox_v1])
        upgraded = await migrate(connection, [STORE_SCHEMA, outbox_v2])
        cursor = await connection.execute(
            f"SELECT component, version FROM {VERSION_TABLE} ORDER BY component"
        )
        versions = await cursor.fetchall()
        with pytest.raises(SchemaNewer, match="example_outbox: database schema version 2"):
            await migrate(connection, [STORE_SCHEMA, outbox_v1])

    assert applied == [("store", 0, LATEST), ("example_outbox", 0, 1)]
    assert again == [("store", LATEST, LATEST), ("example_outbox", 1, 1)]
    assert upgraded == [("store", LATEST, LATEST), ("example_outbox", 1, 2)]
    assert versions == [("example_outbox", 2), ("store", LATEST)]
    with pytest.raises(ValueError, match=r"versions must be 1, 2, \.\.\. in order"):
        MigrationSet("gap", (second,))


# -- PostgreSQL away -----------------------------------------------------------------------------


@dataclass
class Restartable:
    """A server of this test's own that it may restart, and a database on it."""

    cluster: ThrowawayCluster
    dsn: str


@pytest.fixture
def restartable() -> Iterator[Restartable]:
    """A throwaway cluster (never the shared server: this one is restarted) that allows prepared
    transactions: one holds a row's lock across the restart, so what happens when is certain."""
    cluster = ThrowawayCluster()
    try:
        cluster.start()
        with psycopg.connect(cluster.dsn, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET max_prepared_transactions = 4")
        cluster.restart()
    except PostgresUnavailable as error:
        cluster.stop()
        no_postgres(f"no throwaway cluster to restart: {error}", os.environ)
    try:
        with fresh_database(cluster.server) as dsn:
            yield Restartable(cluster, dsn)
    finally:
        cluster.stop()


async def _waiting_on_a_lock(dsn: str, application_name: str) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as probe:
        cursor = await probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND wait_event_type = 'Lock'",
            [application_name],
        )
        row = await cursor.fetchone()
    return row is not None and row[0] > 0


async def test_a_restart_during_a_finish_loses_nothing_and_writes_nothing_twice(
    restartable: Restartable, pg_log: list[str]
) -> None:
    settings = _settings(
        f"{restartable.dsn} password={PASSWORD}", write_retry_initial=0.05, write_retry_max=0.2
    )
    hook = Hook()
    store = await PostgresStore.open(settings, on_storage_error=hook)
    hook.store = store
    try:
        record = make_record()
        await store.create(record)
        await store.record_step(record.workflow_id, 0, "page:0", {"words": 812})
        persisted = metric("notifier_workflow_results_persisted_total", reason="completed")
        # The workflow's row is locked by a prepared transaction, which outlives the restart:
        # the finish waits inside its own transaction when the server goes down, and its
        # retries wait after the server is back, until the test lets the row go.
        async with await psycopg.AsyncConnection.connect(restartable.dsn) as holder:
            await holder.execute(
                "SELECT 1 FROM workflows WHERE workflow_id = %s FOR UPDATE", [record.workflow_id]
            )
            await holder.execute("PREPARE TRANSACTION 'hold-the-row'")
        finishing = asyncio.create_task(
            store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT)
        )
        await wait_until(lambda: _waiting_on_a_lock(restartable.dsn, "notifier"))
        await asyncio.to_thread(restartable.cluster.restart)
        stored = await finishing

        # The finish's transaction died with the server: the result is held in memory...
        [(told_id, told)] = hook.calls
        assert (told_id, type(told)) == (record.workflow_id, StoreError)
        assert "cannot store a result" in str(told)
        assert hook.pending_then == (record.workflow_id,)
        assert hook.read_then == stored.document
        # ...and served from there while its retries wait for the row.
        await wait_until(lambda: _waiting_on_a_lock(restartable.dsn, "notifier"))
        assert store.pending_writes == (record.workflow_id,)
        assert await store.read_result(record.workflow_id) == stored.document
        held = await store.get(record.workflow_id)
        assert held is not None and held.status is WorkflowStatus.COMPLETED
        assert await _results_rows(settings, record.workflow_id) == 0

        async with await psycopg.AsyncConnection.connect(restartable.dsn, autocommit=True) as admin:
            await admin.execute("ROLLBACK PREPARED 'hold-the-row'")
        await wait_until(lambda: not store.pending_writes, what="the held result to land")
        assert await _results_rows(settings, record.workflow_id) == 1
        assert (
            metric("notifier_workflow_results_persisted_total", reason="completed") == persisted + 1
        )
        got = await store.get(record.workflow_id)  # the pool reconnected on its own
        assert got is not None and got.status is WorkflowStatus.COMPLETED
        assert await store.read_result(record.workflow_id) == stored.document
        assert [s.name for s in await store.steps(record.workflow_id)] == ["page:0"]
        again = await finished(store)  # and takes new work
        assert (await store.read_result(again.workflow_id))["result"] == EXAMPLE_RESULT
    finally:
        await store.close()
    assert any("kept in memory, retrying" in line for line in pg_log)
    assert not any(PASSWORD in line for line in pg_log)


@pytest.fixture
async def refusing(
    settings: StorageSettings, postgres_server: PostgresServer
) -> AsyncIterator[Any]:
    """A switch for the test's database: refuse(True) cuts every connection to it and refuses
    new ones (PostgreSQL's words: "database ... is not currently accepting connections")."""
    assert settings.postgres_dsn is not None
    name = psycopg.conninfo.conninfo_to_dict(settings.postgres_dsn.get_secret_value())["dbname"]

    async def refuse(on: bool) -> None:
        async with await psycopg.AsyncConnection.connect(
            postgres_server.dsn, autocommit=True
        ) as admin:
            await admin.execute(
                pg_sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                    pg_sql.Identifier(str(name)), pg_sql.Literal(not on)
                )
            )
            if on:
                await admin.execute(
                    # With a timeout, it returns once each backend is gone, not just signalled.
                    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                    "WHERE datname = %s",
                    [name],
                )

    yield refuse
    await refuse(False)


async def test_a_result_waits_in_memory_while_postgres_refuses_and_lands_after(
    settings: StorageSettings, refusing: Any, pg_log: list[str]
) -> None:
    hook = Hook()
    # Each call made while the database refuses waits this long for a connection, then fails.
    store = await PostgresStore.open(settings, on_storage_error=hook, pool_wait_s=0.5)
    hook.store = store
    try:
        record = make_record(url="https://waiting.example/")
        await store.create(record)
        failures = sum(
            metric("notifier_store_write_failures_total", error=name)
            for name in ("PoolTimeout", "OperationalError")
        )
        await refusing(True)

        stored = await store.finish(
            record.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
        )

        assert store.pending_writes == (record.workflow_id,)
        assert await store.read_result(record.workflow_id) == stored.document
        got = await store.get(record.workflow_id)
        assert got is not None and got.status is WorkflowStatus.COMPLETED
        await store.mark_delivered(record.workflow_id, "dm")  # the database cannot take it yet
        with pytest.raises(StoreError) as unreachable:
            await store.search(ResultQuery())
        assert len(hook.calls) == 1
        assert (
            sum(
                metric("notifier_store_write_failures_total", error=name)
                for name in ("PoolTimeout", "OperationalError")
            )
            > failures
        )

        await refusing(False)
        await wait_until(lambda: not store.pending_writes, what="the held result to land")
        [row] = await store.search(ResultQuery(url_contains="waiting.example"))
        assert (row.status, row.delivery_state, row.delivered_via) == (
            WorkflowStatus.COMPLETED,
            DeliveryState.DELIVERED,
            "dm",
        )
        assert await store.pending_delivery() == []
        assert await _results_rows(settings, record.workflow_id) == 1
        assert len(hook.calls) == 1  # told once, not once per retry
    finally:
        await store.close()
    shown = [*pg_log, str(unreachable.value), *(str(e) for _, e in hook.calls)]
    assert not any(PASSWORD in text for text in shown)
    assert any("not currently accepting connections" in text for text in shown)


async def test_a_finish_the_database_refuses_is_not_offered_for_resuming(
    settings: StorageSettings,
) -> None:
    # The database refuses the finish (a trigger, from outside): the row still says running,
    # but this process holds the outcome; resuming it would run it a second time.
    async with await PostgresStore.open(settings) as store:
        record = make_record()
        await store.create(record)
        await sql(
            settings,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'simulated refusal'; END $$",
        )
        await sql(
            settings,
            "CREATE TRIGGER refuse BEFORE UPDATE ON workflows "
            "FOR EACH ROW EXECUTE FUNCTION refuse()",
        )

        await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result={"ok": 1})

        assert store.pending_writes == (record.workflow_id,)
        assert [r.workflow_id for r in await store.running()] == [record.workflow_id]
        assert await store.resumable() == []
        await sql(settings, "DROP TRIGGER refuse ON workflows")
        await wait_until(lambda: not store.pending_writes)
        assert await store.running() == []


# -- several processes -------------------------------------------------------------------------


async def test_two_processes_finishing_one_workflow_the_first_result_stands(
    settings: StorageSettings,
) -> None:
    async with (
        await PostgresStore.open(settings) as gateway,
        await PostgresStore.open(settings) as worker,
    ):
        record = make_record()
        await gateway.create(record)
        first = await worker.finish(
            record.workflow_id, status=WorkflowStatus.COMPLETED, result={"pages": 15}
        )

        with pytest.raises(StoreError, match="never overwritten"):
            await gateway.finish(
                record.workflow_id, status=WorkflowStatus.COMPLETED, result={"pages": 7}
            )
        same = await gateway.finish(
            record.workflow_id, status=WorkflowStatus.COMPLETED, result={"pages": 15}
        )

        assert same.document == first.document
        assert (await gateway.read_result(record.workflow_id))["result"] == {"pages": 15}
        assert await _results_rows(settings, record.workflow_id) == 1


async def test_a_corrupt_stored_document_is_reported_and_never_overwritten(
    settings: StorageSettings,
) -> None:
    async with await PostgresStore.open(settings) as store:
        done = await finished(store)
        await sql(
            settings,
            "UPDATE results SET document = %s WHERE workflow_id = %s",
            b'{"trunc',
            done.workflow_id,
        )

        with pytest.raises(StoreError, match="stored result is corrupt"):
            await store.read_result(done.workflow_id)
        with pytest.raises(StoreError, match=r"the stored result is corrupt .*not overwritten"):
            await store.finish(
                done.workflow_id, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT
            )

        assert store.pending_writes == ()
        assert await stored_bytes(settings, done.workflow_id) == b'{"trunc'


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        pytest.param(
            "host=127.0.0.1 port={port} dbname=notifier user=notifier password={pw}", id="key-value"
        ),
        pytest.param("postgresql://notifier:{pw}@127.0.0.1:{port}/notifier", id="url"),
        pytest.param("host=127.0.0.1 port={port} password='{pw}' dbname=notifier", id="quoted"),
        pytest.param("host=127.0.0.1 {pw} dbname=notifier", id="unreadable"),
    ],
)
async def test_the_dsn_password_is_in_no_error_and_no_log_line(dsn: str, pg_log: list[str]) -> None:
    settings = _settings(dsn.format(port=free_port(), pw=PASSWORD))

    with pytest.raises(StoreError) as refused:
        await PostgresStore.open(settings)

    message = str(refused.value)
    assert PASSWORD not in message
    assert "127.0.0.1" in message or "storage.postgres_dsn" in message
    chain: BaseException | None = refused.value
    while chain is not None:  # nor in anything chained to it
        assert PASSWORD not in str(chain)
        chain = chain.__cause__ or chain.__context__
    assert not any(PASSWORD in line for line in pg_log)


async def test_a_working_store_logs_where_it_is_but_not_the_password(
    settings: StorageSettings, pg_log: list[str]
) -> None:
    async with await PostgresStore.open(settings) as store:
        await finished(store)

    opened = [line for line in pg_log if "opened PostgreSQL" in line]
    assert opened and "127.0.0.1" in opened[0]
    assert not any(PASSWORD in line for line in pg_log)


# -- retention and reconciliation ----------------------------------------------------------------


async def test_a_clock_31_days_ahead_at_start_deletes_nothing_and_says_why(
    settings: StorageSettings, clock: FakeClock, log_lines: list[str]
) -> None:
    ids = []
    async with await PostgresStore.open(settings, clock=clock, uptime=clock.uptime) as store:
        for _ in range(3):
            record = await finished(store)
            await store.mark_delivered(record.workflow_id, "channel")
            ids.append(record.workflow_id)
            clock.advance(10 * DAY_S)
    clock.jump(31 * DAY_S)  # restarted with the clock set 31 days ahead; the host stayed up

    async with await PostgresStore.open(settings, clock=clock, uptime=clock.uptime) as store:
        rows = [await store.get(w) for w in ids]
        by_hand = await store.purge(older_than_s=30 * DAY_S)

    assert None not in rows
    [warning] = [line for line in log_lines if line.startswith("WARNING") and "retention" in line]
    assert "purged nothing (3 result(s) would have gone)" in warning
    assert "the clock jumped 31.0 days ahead since the last sweep" in warning
    assert by_hand == 3  # an operator's purge does as it is told


async def test_there_is_nothing_to_reconcile(settings: StorageSettings) -> None:
    async with await PostgresStore.open(settings) as store:
        await finished(store)
        report = await store.reconcile()

    assert report.clean


# -- psycopg stays optional --------------------------------------------------------------------


def test_the_bot_the_demo_and_the_cli_start_without_psycopg() -> None:
    check = (
        "import sys\n"
        "import notifier.app, notifier.cli.main, notifier.demo, notifier.store\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')"
        " or m.startswith('notifier.store.postgres'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
