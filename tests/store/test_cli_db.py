"""`python -m notifier db migrate` and `db status` as an operator runs them: real processes against
a real PostgreSQL database (a fresh one per test), and against an SQLite store.

Migrating is idempotent and says each part's version before and after (the store's tables and
the outbox's, which the fanout also applies on its own: both ways agree); a database newer than
the program is refused in words; two processes migrating at once both succeed and the schema is
applied once; the DSN's password never shows, even when the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Final

import psycopg
import pytest

from notifier.config import StorageSettings
from notifier.discord.rest_budget import TABLE as REST_BUDGET_TABLE
from notifier.fanout.outbox_postgres import OUTBOX_MIGRATIONS, OUTBOX_TABLE, apply_outbox_migrations
from notifier.records import WorkflowStatus
from notifier.schema_migrations import MIGRATION_LOCK_KEY, VERSION_TABLE
from notifier.store import ResultStore
from notifier.store.postgres.schema import STORE_SCHEMA
from notifier.testing import wait_until
from notifier.testing.loopback import free_port
from notifier.testing.processes import child_env

from .support import finished

LIMIT_S: Final = 120  # only keeps a broken command from hanging the suite
PASSWORD: Final = "pw-7c1e0-never-shown"  # trust auth ignores it; nothing may print it
LATEST: Final = STORE_SCHEMA.latest
OUTBOX_LATEST: Final = len(OUTBOX_MIGRATIONS)
# Every part's tables: the store's, the outbox's, the REST budget's, the job queue's (our tokens
# and procrastinate's own tables), the users' settings'.
TABLES: Final = sorted(
    [
        VERSION_TABLE,
        OUTBOX_TABLE,
        REST_BUDGET_TABLE,
        "notifier_interaction_tokens",
        "procrastinate_events",
        "procrastinate_jobs",
        "procrastinate_periodic_defers",
        "procrastinate_workers",
        "results",
        "store_notes",
        "user_channels",
        "user_codes_sent",
        "user_notes",
        "user_notice_counts",
        "user_pending_codes",
        "user_secrets",
        "workflow_steps",
        "workflows",
    ]
)


def _config(tmp_path: Path, dsn: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"storage:\n  backend: postgres\n  postgres_dsn: '{dsn} password={PASSWORD}'\n"
    )
    return config


def notifier(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "notifier", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        cwd=config.parent,
        env=child_env(),
        check=False,
    )
    assert PASSWORD not in done.stdout + done.stderr
    return done


def _tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        ).fetchall()
    return [row[0] for row in rows]


def test_migrate_creates_the_schema_once_and_says_so(postgres_dsn: str, tmp_path: Path) -> None:
    config = _config(tmp_path, postgres_dsn)

    first = notifier(config, "db", "migrate")
    second = notifier(config, "db", "migrate")

    assert first.returncode == 0, first.stderr
    assert f"store: schema version 0 -> {LATEST} (migrated)" in first.stdout
    assert f"outbox: schema version 0 -> {OUTBOX_LATEST} (migrated)" in first.stdout
    assert "users: schema version 0 -> 1 (migrated)" in first.stdout
    assert second.returncode == 0, second.stderr
    assert f"store: schema version {LATEST} -> {LATEST} (already current)" in second.stdout
    assert (
        f"outbox: schema version {OUTBOX_LATEST} -> {OUTBOX_LATEST} (already current)"
        in second.stdout
    )
    assert _tables(postgres_dsn) == TABLES


async def test_the_outbox_migrated_by_the_fanout_is_current_for_the_cli_and_back(
    postgres_dsn: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, postgres_dsn)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await apply_outbox_migrations(conn)  # what a Fanout does when it opens its outbox

    status = notifier(config, "db", "status")
    migrated = notifier(config, "db", "migrate")
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        again = await apply_outbox_migrations(conn)

    assert f"outbox: schema version {OUTBOX_LATEST}, current" in status.stdout
    assert "store: no schema yet" in status.stdout
    assert f"store: schema version 0 -> {LATEST} (migrated)" in migrated.stdout
    assert f"outbox: schema version {OUTBOX_LATEST} -> {OUTBOX_LATEST} (already current)" in (
        migrated.stdout
    )
    assert again == OUTBOX_LATEST
    assert _tables(postgres_dsn) == TABLES


def test_status_says_whether_the_schema_is_current(postgres_dsn: str, tmp_path: Path) -> None:
    config = _config(tmp_path, postgres_dsn)

    before = notifier(config, "db", "status")
    notifier(config, "db", "migrate")
    after = notifier(config, "db", "status")

    assert before.returncode == 1
    assert "store: no schema yet" in before.stdout
    assert "run `notifier db migrate`" in before.stdout
    assert after.returncode == 0, after.stderr
    assert f"store: schema version {LATEST}, current" in after.stdout
    host, port, dbname = _where(postgres_dsn)
    assert f"PostgreSQL {host}:{port}/{dbname}" in after.stdout


def _where(dsn: str) -> tuple[str, str, str]:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return str(params["host"]), str(params.get("port", "5432")), str(params["dbname"])


def test_a_database_newer_than_the_program_is_refused_in_words(
    postgres_dsn: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, postgres_dsn)
    notifier(config, "db", "migrate")
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(
            f"UPDATE {VERSION_TABLE} SET version = %s WHERE component = 'store'", [LATEST + 1]
        )

    migrated = notifier(config, "db", "migrate")
    status = notifier(config, "db", "status")

    words = (
        f"database schema version {LATEST + 1} is newer than this program's {LATEST}: "
        "upgrade the program"
    )
    assert migrated.returncode == 1
    assert words in migrated.stderr
    assert status.returncode == 1
    assert f"store: {words}" in status.stdout


async def test_two_processes_migrating_at_once_apply_the_schema_once(
    postgres_dsn: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, postgres_dsn)
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as holder:
        # Hold the migration lock, so both processes are surely inside `migrate` at once.
        await holder.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK_KEY])
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "notifier",
                "--config",
                str(config),
                "db",
                "migrate",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(),
            )
            for _ in range(2)
        ]

        async def both_wait_for_the_lock() -> bool:
            async with await psycopg.AsyncConnection.connect(postgres_dsn) as probe:
                cursor = await probe.execute(
                    "SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = database "
                    "WHERE locktype = 'advisory' AND NOT granted AND d.datname = current_database()"
                )
                row = await cursor.fetchone()
            return row is not None and row[0] == 2

        await wait_until(both_wait_for_the_lock)
        await holder.commit()  # lets them go, one after the other
    outputs = [await asyncio.wait_for(p.communicate(), LIMIT_S) for p in processes]

    assert [p.returncode for p in processes] == [0, 0], [e.decode() for _, e in outputs]
    lines = sorted(
        line
        for out, _ in outputs
        for line in out.decode().splitlines()
        if line.startswith("store:")
    )
    assert lines == [
        f"store: schema version 0 -> {LATEST} (migrated)",
        f"store: schema version {LATEST} -> {LATEST} (already current)",
    ]
    assert _tables(postgres_dsn) == TABLES


def test_an_unreachable_server_is_named_without_its_password(tmp_path: Path) -> None:
    config = _config(tmp_path, f"host=127.0.0.1 port={free_port()} dbname=notifier user=notifier")

    for command in ("migrate", "status"):
        done = notifier(config, "db", command)  # asserts the password is not in the output

        assert done.returncode == 1
        assert "cannot connect to PostgreSQL at 127.0.0.1:" in done.stderr
        assert "/notifier" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_connection_string_libpq_cannot_read_is_refused_without_quoting_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"storage:\n  backend: postgres\n  postgres_dsn: 'host=x {PASSWORD}'\n")

    done = notifier(config, "db", "migrate")

    assert done.returncode == 1
    assert "storage.postgres_dsn is not a connection string PostgreSQL understands" in done.stderr


@pytest.fixture
async def sqlite_config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    async with await ResultStore.open(StorageSettings(path=data)) as store:
        await finished(store, status=WorkflowStatus.COMPLETED)
    config = tmp_path / "config.yaml"
    config.write_text(f"storage:\n  path: {data}\n")
    return config


def test_with_sqlite_migrate_has_nothing_to_do(sqlite_config: Path) -> None:
    done = notifier(sqlite_config, "db", "migrate")

    assert done.returncode == 0, done.stderr
    assert "the SQLite index migrates itself when the bot starts; nothing to do" in done.stdout


def test_with_sqlite_status_shows_the_index_version(sqlite_config: Path) -> None:
    from notifier.store.sqlite.schema import SCHEMA_VERSION

    done = notifier(sqlite_config, "db", "status")

    assert done.returncode == 0, done.stderr
    assert f"schema version {SCHEMA_VERSION} (this program's is {SCHEMA_VERSION}; current)" in (
        done.stdout
    )
