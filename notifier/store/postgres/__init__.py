"""The PostgreSQL backend of the result store (``storage.backend: postgres``).

This package is the only part of `notifier` that imports psycopg (besides the test harness,
`notifier.testing.postgres`): it is imported only when a PostgreSQL store is opened
(`notifier.store.open_store`) or ``notifier db`` runs, so the embedded default (SQLite, the demo,
``scripts/run-bot``) runs without psycopg installed.

`PostgresStore` keeps the `notifier.store.Store` methods' semantics (its module docstring says
how); `notifier.schema_migrations` holds the migration engine and the version table; `schema` the
store's own tables.
"""

from __future__ import annotations

from ...schema_migrations import (
    Migration,
    MigrationSet,
    SchemaNewer,
    SetStatus,
    check_current,
    migrate,
    register,
    registered,
    status,
)
from .admin import database_status, migrate_database
from .connection import DatabaseAddress
from .schema import STORE_SCHEMA
from .store import PostgresStore, UserLimitReached

__all__ = [
    "STORE_SCHEMA",
    "DatabaseAddress",
    "Migration",
    "MigrationSet",
    "PostgresStore",
    "SchemaNewer",
    "SetStatus",
    "UserLimitReached",
    "check_current",
    "database_status",
    "migrate",
    "migrate_database",
    "register",
    "registered",
    "status",
]
