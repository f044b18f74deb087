"""A PostgreSQL server for tests: found if one runs, started if none does, a clear reason if neither.

The store's tests run against SQLite and PostgreSQL alike, on any machine: a developer's laptop
with a server of its own, CI, or a box with only the PostgreSQL binaries. `find_postgres` looks,
in this order, and stops at the first that applies:

1. `NOTIFIER_TEST_POSTGRES_DSN`, when set: that server and no other (a DSN someone named and
   that does not answer is a reason, never a cue to test against some other server);
2. the local server at 127.0.0.1:5432, as user `postgres`, database `postgres`, if it answers
   within a short connect timeout;
3. a throwaway cluster (`ThrowawayCluster`): `initdb` into a temporary folder and `pg_ctl start`
   on a free port of 127.0.0.1, if the binaries exist. PostgreSQL refuses to run as root, so a
   root process runs them as the `postgres` user (`runuser -u postgres --`); anyone else runs
   them directly. The folder (data, log) is removed when it stops.

None of them: the lookup says why, naming each place it looked. The pytest plugin's fixtures
(`postgres_server`, `postgres_dsn`) then skip with that reason or, when `NOTIFIER_REQUIRE_POSTGRES`
is set (CI), fail with it: a CI run never passes by skipping.

`fresh_database` gives each test its own empty database (with `pg_trgm`), dropped afterwards
even if a connection is still open, so tests never see each other's rows.

`ThrowawayCluster` is also the way to have a server a test may restart (`pg_ctl restart`) or
stop, without touching a server other people use. Its methods block (they wait for `pg_ctl`):
from a coroutine call them through `asyncio.to_thread`.

This module imports psycopg (the `postgres` extra) and is imported only by tests that want
PostgreSQL; `notifier.testing` does not re-export it, so the demo never needs psycopg.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .loopback import free_port

__all__ = [
    "DSN_ENV",
    "LOCAL_DSN",
    "PostgresLookup",
    "PostgresServer",
    "PostgresUnavailable",
    "ThrowawayCluster",
    "find_binaries",
    "find_postgres",
    "fresh_database",
    "process_exists",
    "redacted_dsn",
]

DSN_ENV: Final = "NOTIFIER_TEST_POSTGRES_DSN"
# The server PostgreSQL's Debian/Ubuntu packages start, with the usual trust auth for local tests.
LOCAL_DSN: Final = "host=127.0.0.1 port=5432 dbname=postgres user=postgres"
# How long a probe waits for a server that may not be there (libpq's smallest honoured value is 2).
PROBE_CONNECT_TIMEOUT_S: Final = 2
# Limits that only keep a broken `initdb`/`pg_ctl` from hanging the suite; nothing measures speed.
INITDB_LIMIT_S: Final = 120
PG_CTL_WAIT_S: Final = 60
# The operating-system user PostgreSQL runs as when the tests run as root.
SERVER_OS_USER: Final = "postgres"
# Where packages put the binaries when they are not on PATH (Debian/Ubuntu, then RHEL/Fedora).
_BINARY_GLOBS: Final = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin")
_SECRET_KEYS: Final = frozenset({"password", "sslpassword"})
# A log's last lines shown when `initdb` or `pg_ctl` fails: where it went wrong.
_SHOWN_CHARS: Final = 3000


class PostgresUnavailable(RuntimeError):
    """A throwaway cluster could not be made or started; the message says which step and why."""


def redacted_dsn(dsn: str) -> str:
    """`dsn` as key=value pairs with any password replaced by `***`: safe for a reason or a log."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<a DSN libpq cannot parse>"
    shown = {k: ("***" if k in _SECRET_KEYS else v) for k, v in params.items()}
    return make_conninfo("", **shown)


@dataclass(frozen=True)
class PostgresServer:
    """A server tests may use: `dsn` reaches its maintenance database as a role allowed to create
    databases; `source` says where it came from (shown in the test report)."""

    dsn: str = field(repr=False)  # may hold a password: never in a repr
    source: str = ""

    def dsn_for(self, database: str) -> str:
        """The same server, role and options, connected to `database`."""
        return make_conninfo(self.dsn, dbname=database)


@dataclass(frozen=True)
class PostgresLookup:
    """What `find_postgres` found: a `server`, or None and `reason` (each place it looked and
    why that one would not do). `cluster` is the throwaway cluster started for it, if one was:
    a test that needs to restart the server can use it rather than start another."""

    server: PostgresServer | None
    reason: str
    cluster: ThrowawayCluster | None = None


def _probe(dsn: str) -> str | None:
    """None when `dsn` accepts a connection, else why not (libpq's words, on one line)."""
    try:
        with psycopg.connect(dsn, connect_timeout=PROBE_CONNECT_TIMEOUT_S, autocommit=True):
            return None
    except psycopg.Error as error:
        return " ".join(str(error).split()) or type(error).__name__


def find_binaries() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`: from PATH, else the newest packaged version."""
    on_path = [shutil.which(name) for name in ("initdb", "pg_ctl")]
    if all(on_path):
        folders = {Path(found).resolve().parent for found in on_path if found}
        if len(folders) == 1:
            return folders.pop()
    candidates = [folder for pattern in _BINARY_GLOBS for folder in Path("/").glob(pattern[1:])]
    usable = [c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()]
    return max(usable, key=_version_key, default=None)


def _version_key(folder: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin, (16,) for /usr/pgsql-16/bin: newest wins."""
    return tuple(int(n) for n in re.findall(r"\d+", str(folder)))


@contextlib.contextmanager
def find_postgres(
    env: Mapping[str, str] | None = None, *, local_dsn: str = LOCAL_DSN
) -> Iterator[PostgresLookup]:
    """Look for a server in the order the module docstring gives, and yield what was found.

    A throwaway cluster started here is stopped, and its folder removed, when the block ends.
    `env` defaults to this process's environment; `local_dsn` is where the local server is
    looked for (a test points it at a closed port to reach the throwaway cluster).
    """
    env = os.environ if env is None else env
    named = env.get(DSN_ENV, "").strip()
    if named:
        problem = _probe(named)
        if problem is None:
            yield PostgresLookup(PostgresServer(named, f"{DSN_ENV} ({redacted_dsn(named)})"), "")
        else:
            yield PostgresLookup(
                None, f"{DSN_ENV} names {redacted_dsn(named)}, which refused: {problem}"
            )
        return

    reasons: list[str] = []
    problem = _probe(local_dsn)
    if problem is None:
        yield PostgresLookup(PostgresServer(local_dsn, f"the local server ({local_dsn})"), "")
        return
    reasons.append(f"{DSN_ENV} is not set")
    reasons.append(f"no local server answered at {redacted_dsn(local_dsn)}: {problem}")

    cluster = ThrowawayCluster()
    try:
        cluster.start()
    except PostgresUnavailable as error:
        cluster.stop()
        reasons.append(f"no throwaway cluster: {error}")
        yield PostgresLookup(None, "; ".join(reasons))
        return
    try:
        yield PostgresLookup(cluster.server, "", cluster)
    finally:
        cluster.stop()


@contextlib.contextmanager
def fresh_database(server: PostgresServer, *, prefix: str = "test_") -> Iterator[str]:
    """A new, empty database on `server` with `pg_trgm` enabled; yields its DSN, and drops it on
    the way out even while connections to it are still open (`WITH (FORCE)`)."""
    name = f"{prefix}{secrets.token_hex(6)}"
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = server.dsn_for(name)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        yield dsn
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _SHOWN_CHARS else "..." + text[-_SHOWN_CHARS:]


def process_exists(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, dead and waiting for its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc to ask: the signal said it exists
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_until_gone(pid: int) -> None:
    """Return once the postmaster `pid` has exited. `pg_ctl stop -w` returns when postmaster.pid
    is removed, which the postmaster does just before it exits; a caller that then checks for
    the process (or starts another on the same port) must not see it."""
    deadline = time.monotonic() + PG_CTL_WAIT_S
    while process_exists(pid):
        if time.monotonic() > deadline:
            raise PostgresUnavailable(f"the postmaster (pid {pid}) still runs after pg_ctl stop")
        time.sleep(0.02)


class ThrowawayCluster:
    """A PostgreSQL cluster of its own: `initdb` in a temporary folder, then `pg_ctl` to start,
    restart and stop it on 127.0.0.1 at a free port, with trust auth for the `postgres` role.

    ``with ThrowawayCluster() as cluster:`` starts it and, on the way out, stops it and removes
    the folder. As root, every PostgreSQL binary runs as the `postgres` OS user, who owns the
    folder; as anyone else they run as that user. Settings live in the cluster's
    postgresql.conf, so a `restart` comes back on the same port with the same options.
    """

    def __init__(self, *, binaries: Path | None = None) -> None:
        self._binaries = binaries
        self._folder: Path | None = None
        self.port = 0

    # Where things live --------------------------------------------------------------------------

    @property
    def folder(self) -> Path | None:
        """The temporary folder (data, log) while the cluster exists, else None."""
        return self._folder

    @property
    def dsn(self) -> str:
        """The maintenance database as the superuser; `PostgresServer.dsn_for` for others."""
        if not self.port:
            raise PostgresUnavailable("the throwaway cluster has not been started")
        return f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres"

    @property
    def server(self) -> PostgresServer:
        """This cluster as a `PostgresServer`, for `fresh_database`."""
        return PostgresServer(self.dsn, f"a throwaway cluster ({self})")

    def __repr__(self) -> str:
        return f"ThrowawayCluster(port={self.port}, folder={self._folder})"

    def __str__(self) -> str:
        return f"127.0.0.1:{self.port} in {self._folder}"

    @property
    def _data(self) -> Path:
        assert self._folder is not None
        return self._folder / "data"

    @property
    def _log(self) -> Path:
        assert self._folder is not None
        return self._folder / "server.log"

    def postmaster_pid(self) -> int | None:
        """The server's main process id (from postmaster.pid) while its data folder has one."""
        if self._folder is None:
            return None
        try:
            first_line = (self._data / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, PermissionError):
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    # Running the binaries -----------------------------------------------------------------------

    def _command(self, binary: Path, *args: str) -> list[str]:
        """`binary args`, as the `postgres` OS user when this process is root."""
        command = [str(binary), *args]
        if os.geteuid() != 0:
            return command
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresUnavailable(
                "running as root, PostgreSQL must run as another user, and `runuser` is not found"
            )
        return [runuser, "-u", SERVER_OS_USER, "--", *command]

    def _run(self, what: str, binary: Path, *args: str, limit_s: float) -> None:
        """Run one PostgreSQL binary; a failure raises naming `what`, with its output and the
        server log's end (where PostgreSQL says why it would not start)."""
        command = self._command(binary, *args)
        try:
            done = subprocess.run(
                command,
                cwd=self._folder,  # readable by the postgres user, unlike root's home
                capture_output=True,
                text=True,
                timeout=limit_s,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise PostgresUnavailable(f"{what} took over {limit_s:g}s: {command}") from error
        if done.returncode != 0:
            log = self._log.read_text(errors="replace") if self._log.exists() else ""
            raise PostgresUnavailable(
                f"{what} failed (exit {done.returncode}): {' '.join(command)}\n"
                f"{_tail(done.stdout + done.stderr)}\n{_tail(log)}".rstrip()
            )

    def _pg_ctl(self, action: str, *args: str) -> None:
        assert self._binaries is not None
        self._run(
            f"pg_ctl {action}",
            self._binaries / "pg_ctl",
            action,
            "-D",
            str(self._data),
            "-l",
            str(self._log),
            "-w",
            "-t",
            str(PG_CTL_WAIT_S),
            "-s",
            *args,
            limit_s=PG_CTL_WAIT_S + 30,
        )

    # Life ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Make the cluster (first time only) and start it; returns once it accepts connections."""
        if self._folder is None:
            self._create()
        self._pg_ctl("start")

    def restart(self) -> None:
        """`pg_ctl restart` (fast mode: open connections are cut, as in a server restart); returns
        once the server accepts connections again, on the same port."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """Stop the server and remove the folder. Safe to call twice or after a failed start."""
        folder = self._folder
        if folder is None:
            return
        try:
            pid = self.postmaster_pid()
            if pid is not None:
                try:
                    self._pg_ctl("stop", "-m", "fast")
                except PostgresUnavailable:
                    # Never leave a server behind whose folder is gone: end it the hard way, then
                    # say so.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    raise
                _wait_until_gone(pid)
        finally:
            self._folder = None
            self.port = 0
            shutil.rmtree(folder, ignore_errors=True)

    def _create(self) -> None:
        """`initdb` into a new temporary folder, owned by whoever runs the server."""
        binaries = self._binaries or find_binaries()
        if binaries is None:
            raise PostgresUnavailable(
                "initdb and pg_ctl are neither on PATH nor in " + " or ".join(_BINARY_GLOBS)
            )
        self._binaries = binaries
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SERVER_OS_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root, PostgreSQL must run as the {SERVER_OS_USER!r} user, "
                    "and there is no such user"
                ) from None
        folder = Path(tempfile.mkdtemp(prefix="notifier-pg-"))
        self._folder = folder
        try:
            if owner is not None:
                os.chown(folder, owner.pw_uid, owner.pw_gid)
            self._run(
                "initdb",
                binaries / "initdb",
                *("-D", str(self._data), "-U", "postgres", "-A", "trust"),
                *("-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"),
                limit_s=INITDB_LIMIT_S,
            )
            self.port = free_port()
            settings = {
                "port": str(self.port),
                "listen_addresses": "'127.0.0.1'",
                # TCP only: the packaged socket folder (/var/run/postgresql) may not be writable,
                # and one in a long temporary path would pass the 107-byte socket path limit.
                "unix_socket_directories": "''",
                # Throwaway data: an operating-system crash may lose it. A server crash or
                # restart still loses nothing committed (synchronous_commit stays on).
                "fsync": "off",
                "full_page_writes": "off",
            }
            with (self._data / "postgresql.conf").open("a") as conf:
                conf.write("\n# notifier.testing.postgres.ThrowawayCluster\n")
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        except BaseException:
            self._folder = None
            self.port = 0
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
