"""The check every PostgreSQL connection pool of the project runs before it hands a connection out.

psycopg_pool's usual ``check=AsyncConnectionPool.check_connection`` pings every connection at
every checkout: an empty query, a round trip of its own before the caller's. On a busy bot that
doubled a lookup by id (two round trips instead of one, each waiting for a CPU when the machine is
loaded). `check_if_idle` pings only a connection that sat idle for more than `CHECK_IDLE_S`, or one
the server spoke to while it was idle: a restart or ``pg_terminate_backend`` says goodbye on the
socket (a FATAL, then the close), which a poll sees with no round trip. So a connection a server
restart cut is still dropped and replaced instead of failing the caller's statement; only one cut
silently in that second fails one call, as it would between a check and the query.

A pool uses it with ``connection_class=IdleCheckedConnection`` (or a subclass), ``check=
check_if_idle`` and ``reset=note_returned`` (which notes when the pool took a connection back).
The store, the outbox and the REST budget all do, so it sits below the three of them (the fanout
and `discord` may not import the store), beside the migration engine. It imports psycopg: import
it only where PostgreSQL is in use.
"""

from __future__ import annotations

import select
import time
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

__all__ = [
    "CHECK_IDLE_S",
    "IdleCheckedConnection",
    "check_if_idle",
    "has_unread_input",
    "note_returned",
]

# A connection idle longer than this is checked (an empty query) before the pool hands it out.
CHECK_IDLE_S: Final = 1.0


class IdleCheckedConnection(psycopg.AsyncConnection[tuple[Any, ...]]):
    """A pooled connection that knows when the pool last took it back (`note_returned`)."""

    # A new connection is fresh: handed out unchecked.
    returned_at: float = float("inf")


async def note_returned(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's ``reset`` hook: note when the connection went idle (for `check_if_idle`)."""
    conn.returned_at = time.monotonic()  # type: ignore[attr-defined]


def has_unread_input(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server sent something to an idle connection: on an idle session that is its
    goodbye (a restart's or ``pg_terminate_backend``'s FATAL, then the close). A poll of the
    socket, no round trip; a socket psycopg cannot name counts as suspect."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


async def check_if_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's ``check`` hook: ping a connection idle for over `CHECK_IDLE_S`, or one the
    server spoke to while it was idle (see the module docstring). A connection of a class
    without `IdleCheckedConnection.returned_at` is always pinged."""
    idle_s = time.monotonic() - getattr(conn, "returned_at", float("-inf"))
    if idle_s > CHECK_IDLE_S or has_unread_input(conn):
        await AsyncConnectionPool.check_connection(conn)
