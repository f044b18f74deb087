"""`notifier store migrate --from sqlite --to postgres`: move an embedded store into PostgreSQL.

    notifier store migrate --from sqlite --to postgres [--config FILE] [--dry-run]

For an operator leaving the embedded default for the distributed mode: everything the SQLite
store under ``storage.path`` holds (every workflow's row with its delivery state, every result
document byte for byte, every recorded step, so a workflow that was running resumes), every row
of the SQLite outbox at ``fanout.outbox_path`` (pending, failed, sent, skipped, with their
idempotency keys) and every row of the users' own settings in ``<storage.path>/users.sqlite3``
(``/notify``: channels, webhook secrets, pending codes, codes sent, notice counts, notes; none
there: nothing to copy, and no file is made), copied into the database at
``storage.postgres_dsn``. The config may say ``backend: sqlite`` (before the switch) or ``backend:
postgres`` (after it): the source is always the SQLite store at ``storage.path``, the target always
``storage.postgres_dsn``.

Order, and why:

1. The store's lock (a `ResultStore` opened exclusive, as ``results purge`` takes it): a bot
   writing the store while it is copied would leave PostgreSQL behind, so the command refuses in
   one line naming the bot's PID while one runs. The lock is held until the command ends.
2. Reconciliation of the SQLite store (what the bot does at every start): the index then lists
   every result file, with the delivery its mark records, and no row promises a file that is gone.
3. The PostgreSQL schema, migrated as ``notifier db migrate`` does (every part it knows).
4. A look at everything first (`SqliteImport.walk` without writing, `import_outbox` and
   `PostgresUserSettings.load` likewise): a workflow, outbox row or users' settings row
   PostgreSQL already holds with other content is listed, one line each naming it, and the
   command refuses before copying anything. Held with the same content, it is skipped: running
   the command twice copies nothing the second time, and says so.
5. The copy, a page per transaction (`notifier.store.postgres.importer` says how); the users'
   settings last, in one transaction (they are small: `SettingsDump`).
6. Counts, source against target, as a table: workflows by status and by delivery state, results,
   recorded steps, outbox rows by status, users' settings rows by kind. Exit status 0 when every
   count matches, 1 (naming what differs) when one does not.

``--dry-run`` reads both sides and prints what would be copied; it takes no lock (it works beside
a running bot, as ``results purge --dry-run`` does), reconciles nothing, migrates nothing and
writes nothing.

The DSN's password is never printed: the database is named ``host:port/dbname`` and every error
is masked. psycopg is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from ..config import Settings, StorageSettings, postgres_dsn_of, postgres_extra_missing
from ..errors import StoreLocked
from ..fanout.outbox import OutboxStatus, outbox_path
from ..records import DeliveryState, WorkflowStatus
from ..store import ResultStore
from ..store.result_store import INDEX_NAME
from ..store.sqlite.user_settings import read_dump
from ..store.user_settings import FORGET_KINDS, USERS_FILE
from .common import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, CommandError
from .db import _register_every_part

if TYPE_CHECKING:
    from ..fanout.outbox_postgres import OutboxImport
    from ..store.postgres.importer import SqliteImport, Tally, Walk
    from ..store.postgres.user_settings import PostgresUserSettings, SettingsImport
    from .common import SubParsers

__all__ = ["register", "run"]

# Rows walked between two progress lines on stderr while copying (a large store takes minutes).
PROGRESS_EVERY_ROWS: Final = 10_000
_DSN_EXAMPLE: Final = "postgresql://notifier:${NOTIFIER_PG_PASSWORD}@db.example:5432/notifier"


def register(subparsers: SubParsers) -> None:
    """The ``store`` group: ``migrate``."""
    group = subparsers.add_parser("store", help="the result store as a whole: move it elsewhere")
    actions = group.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        help="copy the SQLite store and outbox into PostgreSQL (idempotent, verified)",
        description=(
            "Copy the SQLite store at storage.path (workflows, delivery state, results byte for "
            "byte, recorded steps), the SQLite outbox (every row, with its idempotency key) and "
            "the users' own settings (users.sqlite3) into the database at storage.postgres_dsn, "
            "after migrating its schema; then compare the counts of both sides. Refused while a "
            "bot holds the store. Rows PostgreSQL already holds are skipped when identical, and "
            "refused (nothing copied, nothing overwritten) when not. Exit status 1 if the counts "
            "differ."
        ),
    )
    migrate.add_argument(
        "--from", dest="source", required=True, choices=["sqlite"], help="the store to copy"
    )
    migrate.add_argument(
        "--to", dest="target", required=True, choices=["postgres"], help="where to copy it"
    )
    migrate.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,  # else it would hide a --config given before the group
        help="configuration file (as `notifier --config FILE`)",
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="say what would be copied; change nothing"
    )
    migrate.set_defaults(handler=run)


def _target(storage: StorageSettings) -> StorageSettings:
    """The PostgreSQL side of `storage`, whatever its backend says; a CommandError naming the
    field when there is no DSN."""
    if storage.postgres_dsn is None:
        raise CommandError(
            "storage.postgres_dsn is not set: name the PostgreSQL database to copy the store "
            f"into (a connection string such as {_DSN_EXAMPLE})",
            EXIT_USAGE,
        )
    return storage.model_copy(update={"backend": "postgres"})


def _load_postgres_parts() -> None:
    """Import what talks to PostgreSQL (only now: psycopg is an extra) and register every part's
    schema as `notifier db migrate` applies it; a CommandError naming the extra if it is missing."""
    try:
        from ..fanout import outbox_postgres  # noqa: F401
        from ..store.postgres import admin, importer  # noqa: F401

        _register_every_part()
    except ModuleNotFoundError as exc:
        if postgres_extra_missing(exc) is None:
            raise
        raise CommandError(
            f"copying into PostgreSQL needs the postgres extra ({exc}): "
            "pip install 'nextcord-notifier[postgres]'",
            EXIT_USAGE,
        ) from None


async def run(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    storage = settings.storage
    target = _target(storage)
    if not await asyncio.to_thread((storage.path / INDEX_NAME).is_file):
        raise CommandError(
            f"no SQLite store at {storage.path} (storage.path): nothing to migrate", EXIT_NOT_FOUND
        )
    _load_postgres_parts()
    outbox_file = outbox_path(settings)
    if args.dry_run:
        return await _dry_run(storage, target, outbox_file, out)
    return await _migrate(storage, target, outbox_file, out)


async def _dry_run(
    storage: StorageSettings, target: StorageSettings, outbox_file: Path, out: TextIO
) -> int:
    """Read both sides, say what a real run would copy (and refuse); change nothing."""
    from ..fanout.outbox_postgres import import_outbox
    from ..store.postgres.importer import SqliteImport

    users_file = storage.path / USERS_FILE
    async with await SqliteImport.open(storage.path, target) as importer:
        print(
            f"dry run: nothing is changed; from the SQLite store at {storage.path} "
            f"(outbox {outbox_file}) to PostgreSQL {importer.address.where}",
            file=out,
        )
        await _schema_plan(importer, out)
        walk = await importer.walk(write=False, read_documents=True)
        outbox = await import_outbox(importer.connection, outbox_file, write=False)
    users: SettingsImport | None = None
    if (dump := await read_dump(users_file)) is not None:
        users_target = await _open_users_target(target)
        try:
            users = await users_target.load(dump, write=False)
        finally:
            await users_target.close()
    return _dry_run_report(walk, outbox, users, users_file, out)


async def _migrate(
    storage: StorageSettings, target: StorageSettings, outbox_file: Path, out: TextIO
) -> int:
    """The copy, in the order the module docstring gives, the store's lock held throughout."""
    from ..fanout.outbox_postgres import import_outbox, imported_counts
    from ..store.postgres.admin import migrate_database
    from ..store.postgres.importer import SqliteImport

    users_file = storage.path / USERS_FILE
    store = await _lock(storage)
    users_target: PostgresUserSettings | None = None
    try:
        report = await store.reconcile()
        if not report.clean:
            done = ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(report).items() if v)
            print(f"reconciled the SQLite store first (as the bot does at start): {done}", file=out)
        where, changes = await migrate_database(target)
        print(
            f"from the SQLite store at {storage.path} (outbox {outbox_file}) to PostgreSQL {where}",
            file=out,
        )
        for name, before, after in changes:
            outcome = "migrated" if after != before else "already current"
            print(f"{name}: schema version {before} -> {after} ({outcome})", file=out)
        dump = await read_dump(users_file)
        users: SettingsImport | None = None
        if dump is not None:
            users_target = await _open_users_target(target)
            users = await users_target.load(dump, write=False)
        async with await SqliteImport.open(storage.path, target) as importer:
            walk = await importer.walk(write=False)
            outbox = await import_outbox(importer.connection, outbox_file, write=False)
            _refuse_conflicts(walk, outbox, users)
            if walk.new.workflows or sum(outbox.new.values()):
                walk = await importer.walk(write=True, progress=_progress())
                outbox = await import_outbox(importer.connection, outbox_file, write=True)
                print(_copied_line(walk, outbox), file=out)
            else:
                print(
                    "nothing to copy: every workflow and outbox row of the SQLite store is in "
                    f"PostgreSQL already, with the same content ({walk.same} workflow(s), "
                    f"{outbox.same} outbox row(s))",
                    file=out,
                )
            if dump is None or users_target is None or users is None:
                print(f"no users' settings to copy (there is no {users_file})", file=out)
            elif sum(users.new.values()):
                users = await users_target.load(dump, write=True)
                print(_users_copied_line(users), file=out)
            else:
                print(
                    "users' settings: nothing to copy: every row is in PostgreSQL already, with "
                    f"the same content ({sum(users.same.values())} row(s))",
                    file=out,
                )
            for line in walk.unreadable:
                print(f"not copied: {line}", file=sys.stderr)
            users_held = None
            if dump is not None and users_target is not None:
                users_held = await users_target.load(dump, write=False)
            _refuse_conflicts(walk, outbox, users_held, copied=True)
            target_tally = await importer.target_tally()
            target_outbox, outbox_total = await imported_counts(importer.connection, outbox_file)
            workflows_total = await importer.target_total()
    finally:
        if users_target is not None:
            await users_target.close()
        await store.close()
    return _verify(
        walk.source,
        target_tally,
        outbox.source,
        target_outbox,
        users_held,
        out=out,
        others=(
            workflows_total - target_tally.workflows,
            outbox_total - sum(target_outbox.values()),
        ),
    )


async def _lock(storage: StorageSettings) -> ResultStore:
    """The SQLite store, its lock held: a one-line refusal naming the bot that holds it."""
    try:
        return await ResultStore.open(storage, maintain=False, exclusive=True)
    except StoreLocked as exc:
        holder = f"PID {exc.pid}" if exc.pid is not None else "PID unknown"
        raise CommandError(
            f"the bot ({holder}) holds {exc.path}: stop it before migrating the store; "
            "nothing was copied",
            EXIT_NOT_FOUND,
        ) from None


async def _open_users_target(target: StorageSettings) -> PostgresUserSettings:
    """The PostgreSQL users' settings, not migrated here: a real run has migrated every part
    already, and a dry run changes nothing (`load` then reads missing tables as empty)."""
    from ..store.postgres.user_settings import PostgresUserSettings

    return await PostgresUserSettings.open(postgres_dsn_of(target), migrate=False)


def _progress() -> Callable[[int], None]:
    """A line on stderr every `PROGRESS_EVERY_ROWS` rows walked: a large store takes a while."""
    shown = 0

    def show(rows: int) -> None:
        nonlocal shown
        if rows - shown >= PROGRESS_EVERY_ROWS:
            shown = rows
            print(f"copying: {rows} workflow(s) walked", file=sys.stderr)

    return show


async def _schema_plan(importer: SqliteImport, out: TextIO) -> None:
    for entry in await importer.schema_status():
        if entry.latest is None:
            continue
        if entry.found is None:
            line = f"no schema yet (would be created at version {entry.latest})"
        elif entry.found > entry.latest:
            raise CommandError(
                f"{entry.name}: database schema version {entry.found} is newer than this "
                f"program's {entry.latest}: upgrade the program"
            )
        elif entry.found < entry.latest:
            line = f"schema version {entry.found} (would be migrated to {entry.latest})"
        else:
            line = f"schema version {entry.found}, current"
        print(f"{entry.name}: {line}", file=out)


def _conflicts(walk: Walk, outbox: OutboxImport, users: SettingsImport | None) -> list[str]:
    return [
        *(str(c) for c in walk.conflicts),
        *outbox.conflicts,
        *(users.conflicts if users is not None else ()),
    ]


def _refuse_conflicts(
    walk: Walk, outbox: OutboxImport, users: SettingsImport | None, *, copied: bool = False
) -> None:
    """Each conflict on a line of stderr, then the refusal (exit status 1)."""
    conflicts = _conflicts(walk, outbox, users)
    if not conflicts:
        return
    for line in conflicts:
        print(line, file=sys.stderr)
    done = "the rest was copied" if copied else "refused: nothing was copied"
    what = f"{len(walk.conflicts)} workflow(s) and {len(outbox.conflicts)} outbox row(s)"
    if users is not None and users.conflicts:
        what = (
            f"{len(walk.conflicts)} workflow(s), {len(outbox.conflicts)} outbox row(s) and "
            f"{len(users.conflicts)} users' settings row(s)"
        )
    raise CommandError(
        f"{what} are in PostgreSQL with other content (listed above); {done}, nothing overwritten"
    )


def _by_status(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


def _copied_line(walk: Walk, outbox: OutboxImport) -> str:
    copied = walk.copied
    return (
        f"copied {copied.workflows} workflow(s) ({_by_status(copied.statuses)}) with "
        f"{copied.results} result(s) and {copied.steps} recorded step(s), and {outbox.copied} "
        f"outbox row(s) ({_by_status(outbox.new)}); already there with the same content: "
        f"{walk.same} workflow(s), {outbox.same} outbox row(s)"
    )


def _by_kind(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[kind]} {kind}" for kind in FORGET_KINDS if counts[kind]) or "none"


def _users_copied_line(users: SettingsImport) -> str:
    return (
        f"copied {sum(users.copied.values())} users' settings row(s) ({_by_kind(users.copied)}); "
        f"already there with the same content: {sum(users.same.values())} row(s)"
    )


def _dry_run_report(
    walk: Walk, outbox: OutboxImport, users: SettingsImport | None, users_file: Path, out: TextIO
) -> int:
    new = walk.new
    print(
        f"would copy {new.workflows} workflow(s) ({_by_status(new.statuses)}) with {new.results} "
        f"result(s) and {new.steps} recorded step(s), and {sum(outbox.new.values())} outbox "
        f"row(s) ({_by_status(outbox.new)})",
        file=out,
    )
    print(
        f"already in PostgreSQL with the same content (skipped): {walk.same} workflow(s), "
        f"{outbox.same} outbox row(s)",
        file=out,
    )
    if users is None:
        print(f"no users' settings to copy (there is no {users_file})", file=out)
    else:
        print(
            f"would copy {sum(users.new.values())} users' settings row(s) "
            f"({_by_kind(users.new)}); already in PostgreSQL with the same content (skipped): "
            f"{sum(users.same.values())}",
            file=out,
        )
    for line in walk.unreadable:
        print(
            f"not copied as it stands: {line} (a real run first reconciles the store, as the "
            "bot does at start: then it is marked lost, and copied as such)",
            file=out,
        )
    conflicts = _conflicts(walk, outbox, users)
    for line in conflicts:
        print(f"would refuse: {line}", file=out)
    return EXIT_NOT_FOUND if conflicts else EXIT_OK


def _table_rows(
    source: Tally,
    target: Tally,
    source_outbox: Counter[str],
    target_outbox: Counter[str],
    users: SettingsImport | None,
) -> list[tuple[str, int, int]]:
    rows = [("workflows", source.workflows, target.workflows)]
    for state in WorkflowStatus:
        pair = (source.statuses[state.value], target.statuses[state.value])
        if any(pair):
            rows.append((f"workflows {state.value}", *pair))
    for delivery in DeliveryState:
        pair = (source.deliveries[delivery.value], target.deliveries[delivery.value])
        if any(pair):
            rows.append((f"delivery {delivery.value}", *pair))
    rows.append(("results", source.results, target.results))
    rows.append(("recorded steps", source.steps, target.steps))
    rows.append(("outbox rows", sum(source_outbox.values()), sum(target_outbox.values())))
    for outbox_state in OutboxStatus:
        pair = (source_outbox[outbox_state.value], target_outbox[outbox_state.value])
        if any(pair):
            rows.append((f"outbox {outbox_state.value}", *pair))
    if users is not None:  # each kind: the SQLite rows, and those PostgreSQL holds the same
        for kind in FORGET_KINDS:
            rows.append((f"users' {kind}", users.source[kind], users.same[kind]))
    return rows


def _verify(
    source: Tally,
    target: Tally,
    source_outbox: Counter[str],
    target_outbox: Counter[str],
    users: SettingsImport | None,
    *,
    out: TextIO,
    others: Sequence[int],
) -> int:
    """Print the counts of both sides as a table; CommandError naming each difference."""
    rows = _table_rows(source, target, source_outbox, target_outbox, users)
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'':<{width}}  {'SQLite':>8}  {'PostgreSQL':>10}", file=out)
    for name, here, there in rows:
        mark = "  <- differs" if here != there else ""
        print(f"{name:<{width}}  {here:>8}  {there:>10}{mark}", file=out)
    other_workflows, other_outbox = others
    if other_workflows or other_outbox:
        print(
            f"(PostgreSQL also holds {other_workflows} workflow(s) and {other_outbox} outbox "
            "row(s) that are not this store's; not counted above)",
            file=out,
        )
    differs = [
        f"{name} (SQLite {here}, PostgreSQL {there})" for name, here, there in rows if here != there
    ]
    if differs:
        raise CommandError(f"the counts differ after the copy: {'; '.join(differs)}")
    print("counts match: PostgreSQL holds everything the SQLite store holds", file=out)
    return EXIT_OK
