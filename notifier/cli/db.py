"""`notifier db migrate` and `notifier db status`: the PostgreSQL schema, by an operator's hand.

The bot migrates the database itself when it starts (`PostgresStore.open`); these commands are for
doing it beforehand (a role with the right to create tables, the bots started with a narrower
one), and for seeing where a database stands. Both are safe beside running bots: migrating takes
the lock the bots take and changes nothing that is current; status only reads.

Every part that keeps tables in PostgreSQL is covered: the store's (``store``) and the outbox's
(``outbox``, whose steps `notifier.fanout.outbox_postgres` defines and applies itself when a bot
opens it; `_register_every_part` hands them to the same migration engine and version table).

With ``storage.backend: sqlite`` there is nothing to do here: the SQLite index brings its own
schema up to date when the bot opens it, and `status` says which version the index file has.

psycopg is imported only when a command runs against PostgreSQL: ``notifier --help`` and every
other command work without it.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any, TextIO

from ..config import Settings, StorageSettings
from ..store.result_store import INDEX_NAME
from ..store.sqlite.schema import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from .common import EXIT_NOT_FOUND, EXIT_OK

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `db` command (with `migrate` and `status`) to the CLI's subparsers."""
    db = subparsers.add_parser(
        "db", help="the PostgreSQL schema: apply its migrations, or show its version"
    )
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    actions.add_parser(
        "migrate",
        help="bring the database schema to this program's version (idempotent)",
        description=(
            "Apply the schema migrations this program knows to storage.postgres_dsn's database, "
            "in one transaction, under the lock bots take when they start; prints each part's "
            "version before and after. A database newer than this program is refused."
        ),
    )
    actions.add_parser(
        "status",
        help="show the database schema's version and whether it is current",
        description="Exit status 0 when every part is current, 1 when it needs a migration.",
    )
    db.set_defaults(handler=run)


async def run(
    args: argparse.Namespace,
    settings: Settings,
    *,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    storage = settings.storage
    if args.db_command == "migrate":
        if storage.backend == "sqlite":
            print(
                "storage.backend is sqlite: the SQLite index migrates itself when the bot "
                "starts; nothing to do",
                file=out,
            )
            return EXIT_OK
        return await _migrate(storage, out)
    if storage.backend == "sqlite":
        return await _sqlite_status(storage, out)
    return await _status(storage, out)


def _register_every_part() -> None:
    """Register the migration sets of the parts the store does not import: the outbox and the
    REST budget (registered here, not at their import, so that a read-only store opened beside
    them does not ask for their tables), the distributed mode's job queue and the users'
    settings (registered when their modules are imported)."""
    from ..discord.rest_budget import REST_BUDGET_SET
    from ..distributed import queue  # noqa: F401 - registers the "queue" set
    from ..fanout.outbox_postgres import OUTBOX_SET
    from ..schema_migrations import register
    from ..store.postgres import user_settings  # noqa: F401 - registers the "users" set

    register(OUTBOX_SET)
    register(REST_BUDGET_SET)


async def _migrate(storage: StorageSettings, out: TextIO) -> int:
    from ..store.postgres.admin import migrate_database

    _register_every_part()
    where, changes = await migrate_database(storage)
    print(f"PostgreSQL {where}", file=out)
    for name, before, after in changes:
        outcome = "migrated" if after != before else "already current"
        print(f"{name}: schema version {before} -> {after} ({outcome})", file=out)
    return EXIT_OK


async def _status(storage: StorageSettings, out: TextIO) -> int:
    from ..store.postgres.admin import database_status

    _register_every_part()
    where, statuses = await database_status(storage)
    print(f"PostgreSQL {where}", file=out)
    exit_code = EXIT_OK
    for entry in statuses:
        if entry.latest is None:
            line = f"schema version {entry.found} (not known to this program)"
        elif entry.current:
            line = f"schema version {entry.found}, current"
        elif entry.found is None:
            line = (
                f"no schema yet (this program's is version {entry.latest}): "
                "run `notifier db migrate`"
            )
            exit_code = EXIT_NOT_FOUND
        elif entry.found > entry.latest:
            line = (
                f"database schema version {entry.found} is newer than this program's "
                f"{entry.latest}: upgrade the program"
            )
            exit_code = EXIT_NOT_FOUND
        else:
            line = (
                f"schema version {entry.found}, older than this program's {entry.latest}: "
                "run `notifier db migrate`"
            )
            exit_code = EXIT_NOT_FOUND
        print(f"{entry.name}: {line}", file=out)
    return exit_code


def _sqlite_version(path: Path) -> int | None:
    """The index file's schema version (PRAGMA user_version), None if there is no file yet."""
    if not path.is_file():
        return None
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = db.execute("PRAGMA user_version").fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


async def _sqlite_status(storage: StorageSettings, out: TextIO) -> int:
    path = storage.path / INDEX_NAME
    try:
        version = await asyncio.to_thread(_sqlite_version, path)
    except sqlite3.Error as exc:
        print(f"storage.backend is sqlite: cannot read {path}: {exc}", file=out)
        return EXIT_NOT_FOUND
    if version is None:
        print(
            f"storage.backend is sqlite: no index at {path} yet (the bot creates it when it "
            f"starts, at schema version {SQLITE_SCHEMA_VERSION})",
            file=out,
        )
    else:
        state = "current" if version == SQLITE_SCHEMA_VERSION else "the bot migrates it at start"
        print(
            f"storage.backend is sqlite: index {path}: schema version {version} (this "
            f"program's is {SQLITE_SCHEMA_VERSION}; {state})",
            file=out,
        )
    return EXIT_OK
