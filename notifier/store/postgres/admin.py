"""What ``notifier db`` does to the PostgreSQL database: migrate it, or say where it stands.

On a connection of its own (no pool, no store), so an operator can bring the schema up to date
before any bot starts, or with the bots running: `migrations.migrate` takes the same lock they
take at start, and changes nothing that is current.
"""

from __future__ import annotations

import contextlib

from ...config import StorageSettings
from ...errors import StoreError
from ...schema_migrations import SetStatus, migrate, status
from . import schema as _schema  # noqa: F401 - registers the store's migration set
from .connection import Connection, DatabaseAddress, connect

__all__ = ["database_status", "migrate_database"]


async def _connect(settings: StorageSettings) -> tuple[Connection, DatabaseAddress]:
    if settings.backend != "postgres" or settings.postgres_dsn is None:
        raise StoreError("storage.backend is not postgres: there is no PostgreSQL database")
    dsn = settings.postgres_dsn.get_secret_value()
    address = DatabaseAddress.parse(dsn)
    return await connect(dsn, address), address


async def migrate_database(settings: StorageSettings) -> tuple[str, list[tuple[str, int, int]]]:
    """Apply every registered migration set; (where, [(set, version before, after), ...])."""
    conn, address = await _connect(settings)
    try:
        return address.where, await migrate(conn)
    except StoreError:
        raise
    except Exception as exc:  # psycopg's: a role that may not create tables, ...
        raise StoreError(
            f"PostgreSQL {address.where}: cannot migrate the schema: {address.describe(exc)}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


async def database_status(settings: StorageSettings) -> tuple[str, list[SetStatus]]:
    """Where each migration set stands, read only; (where, statuses)."""
    conn, address = await _connect(settings)
    try:
        return address.where, await status(conn)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(
            f"PostgreSQL {address.where}: cannot read the schema version: {address.describe(exc)}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
