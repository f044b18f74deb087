"""Schema migrations for the PostgreSQL database: named sets of ordered steps, one version row each.

Why sets: the store's tables are one set (``store``, `schema`); the outbox and the users' settings
will be others, written by other people, each with its own migrations and its own version, so one
can be upgraded without renumbering another. A set is plain data (`MigrationSet`: a name, its
steps numbered 1..N, the sets it needs first); a module that defines one calls `register` at
import, and whatever opens the database (`PostgresStore.open`, ``notifier db migrate``) applies
every registered set. A set that needs another one's tables (a foreign key) names it in
`MigrationSet.requires`, and is applied after it.

The version table, ``notifier_schema_versions``, holds one row per set: its name and the version
applied. Applying (`migrate`) happens in one transaction, under a transaction-level advisory lock
(`MIGRATION_LOCK_KEY`), so several processes starting at once (a gateway and its workers) apply
each step exactly once: the first takes the lock and migrates, the others wait for
it, then find every set current and change nothing. A failed step rolls back the whole
transaction: the database is at the versions it had, never half-way. The version table itself is
created only once the lock is held (two concurrent ``CREATE TABLE IF NOT EXISTS`` can both try to
create it, and one fails). Every part's set goes through this one engine: the store's
(`store.postgres.schema`), the users' settings, the job queue, the outbox
(`fanout.outbox_postgres`) and the REST budget (`discord.rest_budget`); it sits below all of
them (the fanout and `discord` may not import the store), so there is one version table per
database and one lock serialising every part's migrations.

A database whose version of a set is newer than this program's is refused, in words: "database
schema version N is newer than this program's M: upgrade the program". Nothing is changed then
(the program does not know what the newer version means). A set the database holds but this
program does not know (a newer program's) is left alone and listed by `status`.

Read-only callers (the CLI with ``maintain=False``) use `check_current`: StoreError telling the
operator to run ``notifier db migrate`` if the schema is missing or older.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .errors import StoreError

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.AsyncConnection[Any]

__all__ = [
    "MIGRATION_LOCK_KEY",
    "VERSION_TABLE",
    "Migration",
    "MigrationSet",
    "SchemaNewer",
    "SetStatus",
    "check_current",
    "migrate",
    "numbered",
    "register",
    "registered",
    "status",
    "table_exists",
]

# One table and one lock key ("noti" in ASCII) for every part's sets.
VERSION_TABLE: Final = "notifier_schema_versions"
MIGRATION_LOCK_KEY: Final = 0x6E6F7469

_CREATE_VERSION_TABLE: Final = f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (component text PRIMARY KEY, version integer NOT NULL)"


class SchemaNewer(StoreError):
    """The database holds a set at a version this program does not know: upgrade the program.
    `name`, `found` and `latest` say which set, at which version, and this program's."""

    def __init__(self, name: str, found: int, latest: int) -> None:
        super().__init__(_newer_message(name, found, latest))
        self.name, self.found, self.latest = name, found, latest


@dataclass(frozen=True)
class Migration:
    """One step of a set: `version` (1, 2, ...), what it does (`summary`, shown by ``notifier db
    migrate``) and its SQL (several statements allowed; no parameters)."""

    version: int
    summary: str
    sql: str


@dataclass(frozen=True)
class MigrationSet:
    """A named, ordered list of steps with its own version row. `requires`: sets applied first."""

    name: str
    migrations: tuple[Migration, ...]
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        versions = [m.version for m in self.migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(
                f"migration set {self.name!r}: versions must be 1, 2, ... in order, got {versions}"
            )

    @property
    def latest(self) -> int:
        return len(self.migrations)


@dataclass(frozen=True)
class SetStatus:
    """One set as the database holds it: `found` is None when it was never applied."""

    name: str
    found: int | None
    latest: int | None  # None: a set this program does not know

    @property
    def current(self) -> bool:
        return self.found is not None and self.found == self.latest


_REGISTRY: dict[str, MigrationSet] = {}


def numbered(name: str, statements: Sequence[str]) -> MigrationSet:
    """A set from plain SQL steps, step N bringing it from version N-1 to N (the outbox's and the
    REST budget's, whose steps are a tuple of statements)."""
    return MigrationSet(
        name,
        tuple(
            Migration(version, f"{name}, step {version}", sql)
            for version, sql in enumerate(statements, start=1)
        ),
    )


def register(migration_set: MigrationSet) -> MigrationSet:
    """Add a set to those `migrate` applies by default; returns it (``STORE = register(...)``).
    Registering the same set again is harmless; another set under a taken name is a ValueError."""
    known = _REGISTRY.get(migration_set.name)
    if known is not None and known != migration_set:
        raise ValueError(f"a migration set named {migration_set.name!r} is already registered")
    _REGISTRY[migration_set.name] = migration_set
    return migration_set


def registered() -> tuple[MigrationSet, ...]:
    """Every registered set, each after the sets it requires (else in registration order)."""
    return _ordered(_REGISTRY.values())


def _ordered(sets: Iterable[MigrationSet]) -> tuple[MigrationSet, ...]:
    by_name = {s.name: s for s in sets}
    done: list[MigrationSet] = []
    placing: set[str] = set()

    def place(migration_set: MigrationSet) -> None:
        if migration_set in done:
            return
        if migration_set.name in placing:
            raise ValueError(f"migration sets require each other in a circle: {sorted(placing)}")
        placing.add(migration_set.name)
        for name in migration_set.requires:
            if name not in by_name:
                raise ValueError(
                    f"migration set {migration_set.name!r} requires {name!r}, which is not given"
                )
            place(by_name[name])
        placing.discard(migration_set.name)
        done.append(migration_set)

    for migration_set in by_name.values():
        place(migration_set)
    return tuple(done)


def _newer_message(name: str, found: int, latest: int) -> str:
    where = "" if name == "store" else f"{name}: "
    return (
        f"{where}database schema version {found} is newer than this program's {latest}: "
        "upgrade the program"
    )


async def table_exists(conn: Connection, name: str) -> bool:
    """Whether table `name` exists (on the connection's search path): a look that creates
    nothing, for dry runs and for readers of a database no migration has reached yet."""
    cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    row = await cursor.fetchone()
    return bool(row and row[0])


async def _versions(conn: Connection) -> dict[str, int] | None:
    """Each set's applied version, or None when the version table does not exist yet."""
    if not await table_exists(conn, VERSION_TABLE):
        return None
    cursor = await conn.execute(f"SELECT component, version FROM {VERSION_TABLE}")
    return {str(name): int(version) for name, version in await cursor.fetchall()}


async def status(conn: Connection, sets: Sequence[MigrationSet] | None = None) -> list[SetStatus]:
    """Where each set stands (read only): the given sets (default: the registered ones), then
    any the database holds that this program does not know."""
    chosen = registered() if sets is None else _ordered(sets)
    found = await _versions(conn) or {}
    statuses = [SetStatus(s.name, found.get(s.name), s.latest) for s in chosen]
    known = {s.name for s in chosen}
    statuses += [SetStatus(name, v, None) for name, v in sorted(found.items()) if name not in known]
    return statuses


async def check_current(conn: Connection, sets: Sequence[MigrationSet] | None = None) -> None:
    """StoreError unless every set is at this program's version: missing or older asks for
    ``notifier db migrate``; newer is SchemaNewer."""
    for entry in await status(conn, sets):
        if entry.latest is None or entry.current:
            continue
        if entry.found is None:
            raise StoreError(
                f"the database has no {entry.name} schema yet (this program's is version "
                f"{entry.latest}): run `notifier db migrate`"
            )
        if entry.found > entry.latest:
            raise SchemaNewer(entry.name, entry.found, entry.latest)
        raise StoreError(
            f"database schema version {entry.found} of {entry.name} is older than this "
            f"program's {entry.latest}: run `notifier db migrate`"
        )


async def migrate(
    conn: Connection, sets: Sequence[MigrationSet] | None = None
) -> list[tuple[str, int, int]]:
    """Bring every set (default: the registered ones) to its latest version, in one transaction
    under the migration lock. Returns (name, version before, version after) for each set, 0 for
    one never applied. SchemaNewer (and nothing changed) if the database is ahead of a set."""
    chosen = registered() if sets is None else _ordered(sets)
    changes: list[tuple[str, int, int]] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK_KEY])
        await conn.execute(_CREATE_VERSION_TABLE)
        found = await _versions(conn) or {}
        for migration_set in chosen:
            before = found.get(migration_set.name, 0)
            if before > migration_set.latest:
                raise SchemaNewer(migration_set.name, before, migration_set.latest)
        for migration_set in chosen:
            before = found.get(migration_set.name, 0)
            for step in migration_set.migrations[before:]:
                await conn.execute(step.sql)
            if migration_set.latest != before:
                await conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (component, version) VALUES (%s, %s) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    [migration_set.name, migration_set.latest],
                )
            changes.append((migration_set.name, before, migration_set.latest))
    return changes
