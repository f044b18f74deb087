"""Reaching the PostgreSQL server: the connection pool, and what its errors may say.

Secrets: the DSN (``storage.postgres_dsn``) may hold a password. Nothing here puts the DSN in a
log line or an error: a server is named by `DatabaseAddress.where` (``host:port/dbname``), and
every error text that reaches a log or a StoreError goes through `DatabaseAddress.mask` first,
which replaces the password in each form a DSN may carry it (``postgresql://user:pw@``,
URL-encoded or not, ``?password=``, ``password=pw``, quoted). libpq's own messages name the host
and the user, never the password; the mask is for the cases that quote the connection string
back (a DSN libpq cannot parse). The password is also given to the process-wide redactor
(`notifier.logs`), so a line from psycopg's own logger, routed into loguru, is masked too.

Reconnecting: the pool checks a connection that sat idle for more than a second before handing
it out (one empty query), so a connection a server restart cut is dropped and replaced instead of
failing the caller's statement; a connection used moments ago is handed out unchecked unless the
server said goodbye on it (`notifier.pg_pool`: the check the outbox and the REST budget use too,
and why it spares the round trip per checkout). A read that fails anyway is
tried once more on a fresh connection (`Database.fetch`); writes decide for themselves whether a
second try is safe (`Database.run`, ``retry=``).

Host names: psycopg resolves a DSN's host name with the event loop's ``getaddrinfo``, which runs
in asyncio's default thread pool, shared with work the store cannot bound (a workflow's thread
may hold it for as long as a parse takes; `threads` says why the store keeps off it). A new
connection (the pool growing, or reconnecting after a restart) would then wait for that pool.
So the host name is resolved here, on a thread of the store's own (`resolved_conninfo`), and
handed to libpq as ``hostaddr`` beside the name (kept for TLS and the server's logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...config import dsn_secrets
from ...errors import StoreError
from ...logs import MASK, redactor
from ...pg_pool import IdleCheckedConnection, check_if_idle, note_returned

__all__ = [
    "CONNECT_TIMEOUT_S",
    "POOL_MAX_SIZE",
    "POOL_MIN_SIZE",
    "POOL_WAIT_S",
    "Connection",
    "Database",
    "DatabaseAddress",
    "error_name",
    "resolved_conninfo",
]

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

# How long a new connection may take (libpq's connect_timeout; its smallest honoured value is 2).
CONNECT_TIMEOUT_S: Final = 5
# How long a caller waits for a pooled connection before its call fails (the server is away): a
# finish then keeps its result in memory and retries in the background, a read fails in words.
POOL_WAIT_S: Final = 5.0
# One connection kept open while idle; at most ten at once per process: the runner's workflows
# share them (a statement holds one for a millisecond or two), and ten processes (a gateway and
# workers) stay far below PostgreSQL's default max_connections of 100.
POOL_MIN_SIZE: Final = 1
POOL_MAX_SIZE: Final = 10
# TCP keepalives: a server host that vanished without closing its sockets (a power cut, a network
# partition) is noticed within about half a minute instead of the kernel's two hours.
_KEEPALIVES: Final = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
APPLICATION_NAME: Final = "notifier"


_resolver: ThreadPoolExecutor | None = None


def _resolver_thread() -> ThreadPoolExecutor:
    global _resolver
    if _resolver is None:
        _resolver = ThreadPoolExecutor(1, thread_name_prefix="store-dns")
    return _resolver


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolved_conninfo(dsn: str) -> str:
    """`dsn` with its host name resolved on the store's own thread (see the module docstring):
    one ``hostaddr`` per address, the name repeated beside each. Unchanged when there is nothing
    to resolve (an IP address, a socket folder, several hosts, ``hostaddr`` given). A name that
    does not resolve is an OperationalError in libpq's manner, naming the host."""
    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or "")
    if not host or "," in host or host.startswith("/") or params.get("hostaddr") or _is_ip(host):
        return dsn
    port = str(params.get("port") or "5432")
    loop = asyncio.get_running_loop()
    try:
        found = await loop.run_in_executor(
            _resolver_thread(),
            lambda: socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            ),
        )
    except OSError as exc:
        raise psycopg.OperationalError(f'could not translate host name "{host}": {exc}') from None
    addresses = list(dict.fromkeys(str(entry[4][0]) for entry in found))
    return make_conninfo(dsn, host=",".join([host] * len(addresses)), hostaddr=",".join(addresses))


def error_name(exc: BaseException) -> str:
    """A short, bounded name for a failure, for the ``error`` label of the write-failure counter
    (``AdminShutdown``, ``OperationalError``, ``PoolTimeout``...): the class, never the text."""
    cause = exc.__cause__ if isinstance(exc, StoreError) and exc.__cause__ is not None else exc
    return type(cause).__name__


@dataclass(frozen=True)
class DatabaseAddress:
    """Where the database is, as it may be shown (`where`), and how to keep its password out of
    any text (`mask`). Built by `parse`; the DSN itself is only handed to libpq."""

    where: str
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def parse(cls, dsn: str) -> DatabaseAddress:
        """StoreError (naming the setting, not quoting it) if libpq cannot read `dsn`."""
        secrets = {s for s in dsn_secrets(dsn) if s}
        try:
            params: dict[str, Any] | None = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            params = None  # libpq's message quotes the string back: raised outside, unchained
        if params is None:
            raise StoreError(
                "storage.postgres_dsn is not a connection string PostgreSQL understands (a "
                "postgresql://user@host:5432/dbname URL, or key=value pairs such as "
                "'host=db.example dbname=notifier user=notifier')"
            )
        password = params.get("password")
        if password:
            secrets.add(str(password))
        host = str(params.get("host") or params.get("hostaddr") or "localhost")
        port = str(params.get("port") or "5432")
        dbname = str(params.get("dbname") or params.get("user") or "")
        return cls(f"{host}:{port}/{dbname}", tuple(sorted(secrets, key=len, reverse=True)))

    def mask(self, text: str) -> str:
        """`text` with the DSN's password replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def describe(self, exc: BaseException) -> str:
        """An error's text on one line, masked: what a StoreError or a log line may show."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        return self.mask(text)


@dataclass
class _LastFailure:
    """Why the pool's latest attempt to connect failed: a pool that times out says only that it
    timed out, and an operator needs libpq's reason ("password authentication failed...")."""

    error: BaseException | None = None


def _remembering(last: _LastFailure) -> type[Connection]:
    """A connection class that notes in `last` why a connection could not be made."""

    class RememberingConnection(IdleCheckedConnection):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> RememberingConnection:
            try:
                connection = await super().connect(conninfo, **kwargs)
            except psycopg.Error as exc:
                last.error = exc
                raise
            last.error = None
            return connection

    return RememberingConnection


class Database:
    """The pool of one store, and how its calls fail: StoreError, masked, naming `where`."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        address: DatabaseAddress,
        last_failure: _LastFailure | None = None,
    ) -> None:
        self._pool = pool
        self.address = address
        self._last_failure = last_failure or _LastFailure()

    @classmethod
    async def open(
        cls,
        dsn: str,
        address: DatabaseAddress,
        *,
        min_size: int = POOL_MIN_SIZE,
        max_size: int = POOL_MAX_SIZE,
        wait_s: float = POOL_WAIT_S,
    ) -> Database:
        """A pool of `min_size`..`max_size` connections, the first one made before this returns
        (StoreError, in libpq's words and masked, if the server cannot be reached); a call waits
        at most `wait_s` for a connection before it fails."""
        redactor.add(address.secrets)

        async def conninfo() -> str:
            return await resolved_conninfo(dsn)

        last_failure = _LastFailure()
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            conninfo,
            connection_class=_remembering(last_failure),
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": APPLICATION_NAME,
                **_KEEPALIVES,
            },
            min_size=min_size,
            max_size=max_size,
            open=False,
            check=check_if_idle,
            reset=note_returned,
            timeout=wait_s,
            name=f"notifier-store {address.where}",
        )
        try:
            await pool.open(wait=True, timeout=wait_s + CONNECT_TIMEOUT_S)
        except PoolTimeout:
            await pool.close()
            # The pool says only that it timed out; one direct attempt says why.
            raise StoreError(
                f"cannot connect to PostgreSQL at {address.where}: {await _why(dsn, address)}"
            ) from None
        return cls(pool, address, last_failure)

    async def close(self) -> None:
        await self._pool.close()

    def error(self, action: str, exc: BaseException) -> StoreError:
        """The StoreError for a failed call (`action`: what it was doing, "read a result"); a
        pool that timed out is given the reason its last attempt to connect failed."""
        reason = self.address.describe(exc)
        if isinstance(exc, PoolTimeout) and self._last_failure.error is not None:
            reason += (
                f"; the last attempt to connect: {self.address.describe(self._last_failure.error)}"
            )
        failure = StoreError(f"PostgreSQL {self.address.where}: cannot {action}: {reason}")
        failure.__cause__ = exc
        return failure

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A checked connection from the pool (autocommit: open a transaction for several
        statements). PoolTimeout (an OperationalError) once the pool's wait passed without one."""
        async with self._pool.connection() as conn:
            yield conn

    async def fetch(
        self, action: str, query: str, params: Sequence[Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows of one read. Tried once more on a fresh connection if the first one failed with
        the connection (a restart between the pool's check and the query); StoreError else."""

        async def read(conn: Connection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()

        return await self.run(action, read, retry=True)

    async def run[T](
        self, action: str, work: Callable[[Connection], Awaitable[T]], *, retry: bool
    ) -> T:
        """`work(connection)`; with `retry`, once more after a failure of the connection (only
        for work that is safe to repeat: reads, upserts). StoreError (masked) on failure."""
        for attempt in (1, 2):
            try:
                async with self.connection() as conn:
                    return await work(conn)
            except PoolTimeout as exc:  # already waited its wait_s: the server is away
                raise self.error(action, exc) from exc
            except psycopg.OperationalError as exc:
                if retry and attempt == 1:
                    continue
                raise self.error(action, exc) from exc
            except psycopg.Error as exc:
                raise self.error(action, exc) from exc
            except UnicodeEncodeError as exc:  # text PostgreSQL cannot hold (a lone surrogate)
                raise self.error(action, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _why(dsn: str, address: DatabaseAddress) -> str:
    """libpq's reason a connection to `dsn` fails, masked (one attempt, for an error message)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            await resolved_conninfo(dsn), connect_timeout=CONNECT_TIMEOUT_S, autocommit=True
        )
    except psycopg.Error as exc:
        return address.describe(exc)
    await conn.close()
    return "the server answered only now; try again"


async def connect(dsn: str, address: DatabaseAddress) -> Connection:
    """One connection outside any pool (migrations, `notifier db`); StoreError naming the server
    and libpq's reason, masked, if it cannot be made."""
    redactor.add(address.secrets)
    try:
        return await psycopg.AsyncConnection.connect(
            await resolved_conninfo(dsn),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=APPLICATION_NAME,
        )
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot connect to PostgreSQL at {address.where}: {address.describe(exc)}"
        ) from None
