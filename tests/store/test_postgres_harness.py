"""The PostgreSQL harness the store tests will run on: `postgres_server` finds a server (or the
reason there is none), `postgres_dsn` gives each test an empty database of its own with pg_trgm,
a throwaway cluster starts, restarts and leaves nothing behind, and with
NOTIFIER_REQUIRE_POSTGRES=1 (CI) a missing server fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifier.testing.loopback import free_port
from notifier.testing.postgres import (
    DSN_ENV,
    SERVER_OS_USER,
    PostgresServer,
    find_binaries,
    find_postgres,
    process_exists,
)
from notifier.testing.processes import child_env
from notifier.testing.pytest_plugin import REQUIRE_POSTGRES_ENV, no_postgres, postgres_required

LIMIT_S = 120  # only keeps a broken child pytest from hanging the suite


def _user_tables(connection: psycopg.Connection[Any]) -> list[str]:
    rows = connection.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    return [row[0] for row in rows]


def _unreachable_dsn(password: str = "") -> str:
    """A DSN nothing answers: a port on 127.0.0.1 that nothing listens on."""
    extra = f" password={password}" if password else ""
    return f"host=127.0.0.1 port={free_port()} dbname=postgres user=postgres{extra}"


async def test_the_fixture_connects_to_a_database_of_its_own(postgres_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as connection:
        cursor = await connection.execute("SELECT current_database()")
        row = await cursor.fetchone()

    assert row is not None
    assert row[0].startswith("test_")


# Databases the rows below were given, with a connection the first row leaves open on purpose
# (a test that forgets to close): the drop must not wait for it.
_GIVEN: dict[str, psycopg.Connection[Any]] = {}


@pytest.mark.parametrize("row", ["first", "second"])
def test_each_test_gets_a_new_empty_database_and_the_last_one_is_dropped(
    row: str, postgres_dsn: str, postgres_server: PostgresServer
) -> None:
    connection = psycopg.connect(postgres_dsn, autocommit=True)
    name = connection.info.dbname

    assert _user_tables(connection) == []  # nothing from an earlier test
    assert name not in _GIVEN
    with psycopg.connect(postgres_server.dsn) as admin:
        earlier = admin.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [list(_GIVEN)]
        ).fetchall()
    assert earlier == []  # dropped, though the first row's connection was still open
    for left_open in _GIVEN.values():
        assert left_open.closed or left_open.broken or not _answers(left_open)

    connection.execute("CREATE TABLE left_behind (n int)")
    connection.execute("INSERT INTO left_behind VALUES (1)")
    _GIVEN[name] = connection  # left open on purpose


def _answers(connection: psycopg.Connection[Any]) -> bool:
    try:
        connection.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def test_pg_trgm_serves_substring_search(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE pages (url text NOT NULL)")
        connection.execute(
            "INSERT INTO pages SELECT 'https://site' || n || '.example/' FROM generate_series(1, 500) n"
        )
        connection.execute("CREATE INDEX pages_url ON pages USING gin (url gin_trgm_ops)")
        connection.execute("ANALYZE pages")
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                "EXPLAIN SELECT url FROM pages WHERE url LIKE '%site42.%'"
            ).fetchall()
        )
        found = connection.execute("SELECT url FROM pages WHERE url LIKE '%site42.%'").fetchall()

    assert "pages_url" in plan, plan
    assert found == [("https://site42.example/",)]


def test_a_named_dsn_is_used(postgres_server: PostgresServer) -> None:
    with find_postgres({DSN_ENV: postgres_server.dsn}) as found:
        assert found.server is not None
        assert found.server.dsn == postgres_server.dsn
        assert DSN_ENV in found.server.source


def test_a_named_dsn_that_refuses_is_the_reason_and_no_other_server_is_tried() -> None:
    dsn = _unreachable_dsn(password="s3cret-pw")

    with find_postgres({DSN_ENV: dsn}) as found:
        assert found.server is None  # even when a local server answers: the DSN named this one
        assert DSN_ENV in found.reason
        assert dsn.split()[1] in found.reason  # the port, so a reader sees which server
        assert "s3cret-pw" not in found.reason
        assert "password=***" in found.reason


@pytest.mark.parametrize(
    ("value", "required"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("no", False),
        ("1", True),
        ("true", True),
        ("YES", True),
    ],
)
def test_require_postgres_values(value: str | None, required: bool) -> None:
    env = {} if value is None else {REQUIRE_POSTGRES_ENV: value}

    assert postgres_required(env) is required


def test_an_unknown_require_value_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=f"{REQUIRE_POSTGRES_ENV}='maybe'"):
        postgres_required({REQUIRE_POSTGRES_ENV: "maybe"})


def test_without_a_server_a_test_skips_and_when_required_it_fails() -> None:
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL server: nothing here"):
        no_postgres("nothing here", {})
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_POSTGRES_ENV} is set.*nothing here"):
        no_postgres("nothing here", {REQUIRE_POSTGRES_ENV: "1"})


CHILD_TEST = """
def test_needs_postgres(postgres_dsn):
    pass
"""


@pytest.mark.parametrize(
    ("require", "exit_code", "outcome"),
    [
        pytest.param("", 0, "1 skipped", id="skips"),
        pytest.param("1", 1, "1 error", id="required-fails"),
    ],
)
def test_a_pytest_run_with_an_unreachable_server(
    tmp_path: Path, require: str, exit_code: int, outcome: str
) -> None:
    (tmp_path / "test_child.py").write_text(CHILD_TEST)
    dsn = _unreachable_dsn()
    env = child_env(**{DSN_ENV: dsn, REQUIRE_POSTGRES_ENV: require})
    env.pop("PYTEST_ADDOPTS", None)

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "test_child.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        check=False,
    )

    output = done.stdout + done.stderr
    assert done.returncode == exit_code, output
    assert outcome in output, output
    assert f"{DSN_ENV} names" in output and dsn.split()[1] in output, output


def test_with_no_server_a_throwaway_cluster_starts_restarts_and_leaves_nothing_behind() -> None:
    # The session's one throwaway cluster: the local server is looked for at a closed port, so
    # the lookup falls through to starting one, as on a machine with only the binaries.
    if find_binaries() is None:
        no_postgres("initdb and pg_ctl not found: no throwaway cluster", os.environ)
    local = _unreachable_dsn()

    with find_postgres({}, local_dsn=local) as found:
        cluster = found.cluster
        assert found.server is not None and cluster is not None, found.reason
        assert "throwaway" in found.server.source
        folder = cluster.folder
        assert folder is not None and folder.is_dir()
        first_pid = cluster.postmaster_pid()
        assert first_pid is not None
        expected_owner = SERVER_OS_USER if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        assert pwd.getpwuid(Path(f"/proc/{first_pid}").stat().st_uid).pw_name == expected_owner

        with psycopg.connect(found.server.dsn, autocommit=True) as before:
            assert before.execute("SELECT 1").fetchone() == (1,)
            before.execute("CREATE TABLE kept (n int)")
            before.execute("INSERT INTO kept VALUES (7)")
            cluster.restart()
            with pytest.raises(psycopg.OperationalError):
                before.execute("SELECT 1")  # the restart cut it, as a real restart would

        second_pid = cluster.postmaster_pid()
        assert second_pid is not None and second_pid != first_pid
        assert not process_exists(first_pid)
        with psycopg.connect(found.server.dsn) as after:  # same port, a new server process
            assert after.execute("SELECT n FROM kept").fetchall() == [(7,)]

    assert not process_exists(second_pid)
    assert not folder.exists()
    assert cluster.folder is None
