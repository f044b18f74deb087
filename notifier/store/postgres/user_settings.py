"""The users' own notification settings in PostgreSQL: the ``users`` migration set's tables.

The methods and what they mean are `notifier.store.user_settings.UserSettingsStore`'s, as the
SQLite file keeps them (`notifier.store.sqlite.user_settings`); here they are rows of the store's
database, shared by the gateway and its workers. The tables are the SQLite file's, named with a
``user_`` prefix in the shared database (``user_channels``, ``user_secrets``,
``user_pending_codes``, ``user_codes_sent``, ``user_notice_counts``, ``user_notes``); Discord ids
are ``bigint`` and times ``double precision`` Unix seconds, as in `schema`.

Several processes at once.
    Every write is one statement in autocommit (committed, and so durable, when it returns), or
    one transaction (`forget`). The counters are single statements that read and write the row
    together (``UPDATE ... RETURNING``, ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``): two
    processes counting at once get two different counts, never the same one twice. A write that
    is safe to repeat (setting a value) is tried once more after a lost connection; a counter is
    not (a statement that reached the server and lost only its answer would count twice).

Copying in.
    `load` takes the SQLite backend's `SettingsDump` (``notifier store migrate``) and, in one
    transaction, compares each row with the row these tables hold under its key (the codes sent
    and the notes, which have none, by every column, repeats counted): the same content is
    skipped, other content is a conflict, listed and never overwritten, and with ``write`` the
    rows not held are inserted (``ON CONFLICT DO NOTHING`` where there is a key, so a row that
    appeared since the look is not overwritten either). Run again, it finds every row held and
    copies nothing.

Schema.
    Importing this module registers `USERS_SCHEMA` (so ``notifier db migrate`` applies it once
    `notifier.cli.db` imports it); `PostgresUserSettings.open` applies this one set on a
    connection of its own before opening its pool, under the lock every migration takes, and
    refuses a database whose ``users`` version is newer than this program's, in words
    (`migrations.SchemaNewer`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from loguru import logger
from psycopg.types.json import Jsonb

from ...errors import StoreError
from ...schema_migrations import Migration, MigrationSet, migrate, register, table_exists
from ..user_settings import (
    CODES_SENT_KEPT_S,
    DUMP_COLUMNS,
    DUMP_KEY_COLUMNS,
    FORGET_KINDS,
    ChannelSetting,
    ForgetReport,
    PendingCode,
    SettingsDump,
    UserSettings,
    UserSummary,
    export_document,
    oldest_notice_day,
    user_summaries,
)
from . import schema as _schema  # noqa: F401 - the store's set registered first (`registered` order)
from .connection import Connection, Database, DatabaseAddress, connect
from .index import _text

__all__ = [
    "POOL_MAX_SIZE",
    "POOL_MIN_SIZE",
    "USERS_SCHEMA",
    "PostgresUserSettings",
    "SettingsImport",
]

# Settings are read once per notice and written by hand: a small pool of their own.
POOL_MIN_SIZE: Final = 1
POOL_MAX_SIZE: Final = 4

_V1: Final = """
CREATE TABLE user_channels (
    user_id          bigint           NOT NULL,
    via              text             NOT NULL,
    target           text             NOT NULL DEFAULT '',
    events           jsonb            NOT NULL DEFAULT '[]',
    workflows        jsonb            NOT NULL DEFAULT '[]',
    enabled          boolean          NOT NULL DEFAULT true,
    disabled_reason  text             NOT NULL DEFAULT '',
    failures         integer          NOT NULL DEFAULT 0,
    updated_at       double precision NOT NULL,
    PRIMARY KEY (user_id, via)
);
CREATE TABLE user_secrets (
    user_id          bigint           PRIMARY KEY,
    webhook_secret   text             NOT NULL,
    updated_at       double precision NOT NULL
);
CREATE TABLE user_pending_codes (
    user_id          bigint           PRIMARY KEY,
    address          text             NOT NULL,
    code_hash        text             NOT NULL,
    expires_at       double precision NOT NULL,
    attempts         integer          NOT NULL DEFAULT 0,
    events           jsonb            NOT NULL DEFAULT '[]',
    workflows        jsonb            NOT NULL DEFAULT '[]',
    created_at       double precision NOT NULL
);
CREATE TABLE user_codes_sent (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint,
    address_hash     text             NOT NULL,
    sent_at          double precision NOT NULL
);
CREATE INDEX user_codes_sent_user ON user_codes_sent (user_id, sent_at);
CREATE INDEX user_codes_sent_address ON user_codes_sent (address_hash, sent_at);
CREATE INDEX user_codes_sent_time ON user_codes_sent (sent_at);
CREATE TABLE user_notice_counts (
    user_id          bigint           NOT NULL,
    day              text             NOT NULL,
    count            integer          NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX user_notice_counts_day ON user_notice_counts (day);
CREATE TABLE user_notes (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint           NOT NULL,
    text             text             NOT NULL,
    created_at       double precision NOT NULL
);
CREATE INDEX user_notes_user ON user_notes (user_id, id);
"""

USERS_SCHEMA: Final = register(
    MigrationSet(
        "users",
        (
            Migration(
                1,
                "users' own notification settings: channels, webhook secrets, e-mail codes, "
                "codes sent, notice counts, notes",
                _V1,
            ),
        ),
    )
)

_CHANNEL_COLUMNS: Final = (
    "via, target, events, workflows, enabled, disabled_reason, failures, updated_at"
)
# Each kind's table (`FORGET_KINDS`, the columns of `DUMP_COLUMNS`).
_TABLES: Final[Mapping[str, str]] = {
    "channels": "user_channels",
    "webhook secret": "user_secrets",
    "pending codes": "user_pending_codes",
    "codes sent": "user_codes_sent",
    "notice counts": "user_notice_counts",
    "notes": "user_notes",
}
_JSON_COLUMNS: Final = frozenset({"events", "workflows"})


@dataclass
class SettingsImport:
    """What `PostgresUserSettings.load` found, by kind (`FORGET_KINDS`): the dump's rows
    (`source`), those held with the same content (`same`), those not held (`new`, inserted with
    ``write``: `copied`), and one line per row held with other content (`conflicts`)."""

    source: Counter[str] = field(default_factory=Counter)
    same: Counter[str] = field(default_factory=Counter)
    new: Counter[str] = field(default_factory=Counter)
    copied: Counter[str] = field(default_factory=Counter)
    conflicts: list[str] = field(default_factory=list)


def _storable(kind: str, row: Sequence[Any]) -> tuple[Any, ...]:
    """A dumped row as these tables hold it: text (and the events' and workflows' names) made
    storable (`_text`), so a copied row compares equal to its source the next time."""

    def one(name: str, value: Any) -> Any:
        if name in _JSON_COLUMNS:
            return tuple(_text(str(item)) for item in value)
        return _text(value) if isinstance(value, str) else value

    return tuple(one(name, value) for name, value in zip(DUMP_COLUMNS[kind], row, strict=True))


def _held(kind: str, row: Sequence[Any]) -> tuple[Any, ...]:
    """A row read from a table, in `SettingsDump`'s shape (jsonb lists as tuples)."""
    return tuple(
        tuple(value) if name in _JSON_COLUMNS else value
        for name, value in zip(DUMP_COLUMNS[kind], row, strict=True)
    )


def _insert_params(kind: str, row: Sequence[Any]) -> list[Any]:
    return [
        Jsonb(list(value)) if name in _JSON_COLUMNS else value
        for name, value in zip(DUMP_COLUMNS[kind], row, strict=True)
    ]


def _conflict(kind: str, row: Sequence[Any], there: Sequence[Any]) -> str:
    """One line naming the row and the columns that differ, never their values (an address, a
    secret)."""
    columns = DUMP_COLUMNS[kind]
    differs = [name for name, a, b in zip(columns, row, there, strict=True) if a != b]
    verb = "differs" if len(differs) == 1 else "differ"
    key = f"user {row[0]}" + (f", {columns[1]} {row[1]}" if DUMP_KEY_COLUMNS[kind] == 2 else "")
    return (
        f"users' {kind} row ({key}) is in PostgreSQL with other content "
        f"({', '.join(differs)} {verb}): not overwritten"
    )


async def _compare(
    conn: Connection, kind: str, rows: Sequence[tuple[Any, ...]], found: SettingsImport
) -> list[tuple[Any, ...]]:
    """Count `rows` (one kind's, storable) into `found` against the table; the rows it lacks."""
    found.source[kind] += len(rows)
    if not rows:
        return []
    user_ids = sorted({row[0] for row in rows if row[0] is not None})
    where = ["user_id = ANY(%s)"] if user_ids else []
    if any(row[0] is None for row in rows):  # a forgotten user's codes sent
        where.append("user_id IS NULL")
    held = [
        _held(kind, row)
        for row in await _fetchall(
            conn,
            f"SELECT {', '.join(DUMP_COLUMNS[kind])} FROM {_TABLES[kind]}"
            f" WHERE {' OR '.join(where)}",
            [user_ids] if user_ids else [],
        )
    ]
    new: list[tuple[Any, ...]] = []
    key_columns = DUMP_KEY_COLUMNS[kind]
    if key_columns is None:  # a log: the same row is an equal one, each held row used once
        unused = Counter(held)
        for row in rows:
            if unused[row] > 0:
                unused[row] -= 1
                found.same[kind] += 1
            else:
                new.append(row)
    else:
        by_key = {row[:key_columns]: row for row in held}
        for row in rows:
            there = by_key.get(row[:key_columns])
            if there is None:
                new.append(row)
            elif there == row:
                found.same[kind] += 1
            else:
                found.conflicts.append(_conflict(kind, row, there))
    found.new[kind] += len(new)
    return new


def _channel(row: Sequence[Any]) -> ChannelSetting:
    via, target, events, workflows, enabled, reason, failures, updated_at = row
    return ChannelSetting(
        via=str(via),
        target=str(target),
        events=tuple(events),
        workflows=tuple(workflows),
        enabled=bool(enabled),
        disabled_reason=str(reason),
        failures=int(failures),
        updated_at=float(updated_at),
    )


async def _fetchall(
    conn: Connection, query: str, params: Sequence[Any] | None = None
) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall() if cursor.description is not None else []


async def _rowcount(conn: Connection, query: str, params: Sequence[Any] | None = None) -> int:
    cursor = await conn.execute(query, params)
    return cursor.rowcount


async def prepare_users_schema(dsn: str, address: DatabaseAddress) -> None:
    """Bring the ``users`` set to this program's version on a connection of its own (see the
    module docstring); StoreError naming the server, SchemaNewer for a newer database."""
    conn = await connect(dsn, address)
    try:
        for name, before, after in await migrate(conn, [USERS_SCHEMA]):
            if before != after:
                logger.info(
                    "users: PostgreSQL {}: schema {} migrated from version {} to {}",
                    address.where,
                    name,
                    before,
                    after,
                )
    except StoreError:
        raise
    except Exception as exc:  # psycopg's: a role without the right to create tables, ...
        raise StoreError(
            f"PostgreSQL {address.where}: cannot migrate the users' settings schema: "
            f"{address.describe(exc)}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


class PostgresUserSettings:
    """Users' settings in PostgreSQL (see the module docstring). Open with
    ``await PostgresUserSettings.open(dsn)`` (a pool of its own, closed by `close`)."""

    def __init__(self, db: Database) -> None:
        """Use `open`; this only assembles the open pool."""
        self._db = db
        self._pruned_day = ""  # the last day whose older notice counts this process pruned

    @classmethod
    async def open(cls, dsn: str, *, migrate: bool = True) -> PostgresUserSettings:
        """Migrate the ``users`` set (unless not `migrate`: a look that must change nothing,
        ``store migrate --dry-run``), then open a pool of `POOL_MIN_SIZE` .. `POOL_MAX_SIZE`
        connections. StoreError (naming the server, never the password) when the server cannot
        be reached or its ``users`` schema is newer than this program's."""
        address = DatabaseAddress.parse(dsn)
        if migrate:
            await prepare_users_schema(dsn, address)
        db = await Database.open(dsn, address, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE)
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    # -- plumbing ---------------------------------------------------------------------------

    async def _write(
        self, action: str, sql: str, params: Sequence[Any], *, retry: bool
    ) -> list[tuple[Any, ...]]:
        """One statement in autocommit; the rows of its RETURNING clause, if it has one."""
        return await self._db.run(action, lambda conn: _fetchall(conn, sql, params), retry=retry)

    async def _changed(self, action: str, sql: str, params: Sequence[Any]) -> int:
        """One statement that is safe to repeat, in autocommit; the rows it changed."""
        return await self._db.run(action, lambda conn: _rowcount(conn, sql, params), retry=True)

    # -- channels and the secret --------------------------------------------------------------

    async def get(self, user_id: int) -> UserSettings:
        action = "read a user's settings"
        rows = await self._db.fetch(
            action,
            f"SELECT {_CHANNEL_COLUMNS} FROM user_channels WHERE user_id = %s ORDER BY via",
            [user_id],
        )
        secret = await self._db.fetch(
            action, "SELECT webhook_secret FROM user_secrets WHERE user_id = %s", [user_id]
        )
        channels = {channel.via: channel for channel in map(_channel, rows)}
        return UserSettings(user_id, channels, str(secret[0][0]) if secret else None)

    async def put_channel(self, user_id: int, setting: ChannelSetting, *, now: float) -> None:
        await self._changed(
            "store a channel",
            "INSERT INTO user_channels (user_id, via, target, events, workflows, enabled,"
            " disabled_reason, failures, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s)"
            " ON CONFLICT (user_id, via) DO UPDATE SET target = excluded.target,"
            " events = excluded.events, workflows = excluded.workflows,"
            " enabled = excluded.enabled, disabled_reason = excluded.disabled_reason,"
            " failures = 0, updated_at = excluded.updated_at",
            [
                user_id,
                _text(setting.via),
                _text(setting.target),
                Jsonb([_text(e) for e in setting.events]),
                Jsonb([_text(w) for w in setting.workflows]),
                setting.enabled,
                _text(setting.disabled_reason),
                now,
            ],
        )

    async def disable_channel(self, user_id: int, via: str, reason: str, *, now: float) -> bool:
        changed = await self._changed(
            "turn a channel off",
            "UPDATE user_channels SET enabled = false, disabled_reason = %s, updated_at = %s"
            " WHERE user_id = %s AND via = %s",
            [_text(reason), now, user_id, _text(via)],
        )
        return changed > 0

    async def remove_channel(self, user_id: int, via: str) -> bool:
        rows = await self._write(
            "remove a channel",
            "DELETE FROM user_channels WHERE user_id = %s AND via = %s RETURNING 1",
            [user_id, _text(via)],
            retry=False,
        )
        return bool(rows)

    async def record_failure(self, user_id: int, via: str, *, now: float) -> int:
        rows = await self._write(
            "count a failed delivery",
            "UPDATE user_channels SET failures = failures + 1, updated_at = %s"
            " WHERE user_id = %s AND via = %s RETURNING failures",
            [now, user_id, _text(via)],
            retry=False,
        )
        return int(rows[0][0]) if rows else 0

    async def reset_failures(self, user_id: int, via: str) -> None:
        await self._changed(
            "reset failed deliveries",
            "UPDATE user_channels SET failures = 0"
            " WHERE user_id = %s AND via = %s AND failures <> 0",
            [user_id, _text(via)],
        )

    async def set_webhook_secret(self, user_id: int, secret: str, *, now: float) -> None:
        await self._changed(
            "store a webhook secret",
            "INSERT INTO user_secrets (user_id, webhook_secret, updated_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (user_id) DO UPDATE SET webhook_secret = excluded.webhook_secret,"
            " updated_at = excluded.updated_at",
            [user_id, secret, now],
        )

    # -- e-mail verification --------------------------------------------------------------------

    async def put_code(self, user_id: int, code: PendingCode, *, now: float) -> None:
        await self._changed(
            "store a verification code",
            "INSERT INTO user_pending_codes (user_id, address, code_hash, expires_at, attempts,"
            " events, workflows, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (user_id) DO UPDATE SET address = excluded.address,"
            " code_hash = excluded.code_hash, expires_at = excluded.expires_at,"
            " attempts = excluded.attempts, events = excluded.events,"
            " workflows = excluded.workflows, created_at = excluded.created_at",
            [
                user_id,
                _text(code.address),
                code.code_hash,
                code.expires_at,
                code.attempts,
                Jsonb([_text(e) for e in code.events]),
                Jsonb([_text(w) for w in code.workflows]),
                now,
            ],
        )

    async def pending_code(self, user_id: int) -> PendingCode | None:
        rows = await self._db.fetch(
            "read a verification code",
            "SELECT address, code_hash, expires_at, attempts, events, workflows"
            " FROM user_pending_codes WHERE user_id = %s",
            [user_id],
        )
        if not rows:
            return None
        address, code_hash, expires_at, attempts, events, workflows = rows[0]
        return PendingCode(
            str(address),
            str(code_hash),
            float(expires_at),
            int(attempts),
            tuple(events),
            tuple(workflows),
        )

    async def count_wrong_code(self, user_id: int) -> int:
        rows = await self._write(
            "count a wrong code",
            "UPDATE user_pending_codes SET attempts = attempts + 1 WHERE user_id = %s"
            " RETURNING attempts",
            [user_id],
            retry=False,
        )
        return int(rows[0][0]) if rows else 0

    async def delete_code(self, user_id: int) -> None:
        await self._changed(
            "delete a verification code",
            "DELETE FROM user_pending_codes WHERE user_id = %s",
            [user_id],
        )

    async def log_code_sent(self, user_id: int, address_hash: str, *, now: float) -> None:
        # One statement: the prune and the insert commit together.
        await self._write(
            "record a code sent",
            "WITH pruned AS (DELETE FROM user_codes_sent WHERE sent_at < %s)"
            " INSERT INTO user_codes_sent (user_id, address_hash, sent_at) VALUES (%s, %s, %s)",
            [now - CODES_SENT_KEPT_S, user_id, address_hash, now],
            retry=False,
        )

    async def codes_sent_since(
        self, *, since: float, user_id: int | None = None, address_hash: str | None = None
    ) -> int:
        where: list[str] = ["sent_at >= %s"]
        params: list[Any] = [since]
        if user_id is not None:
            where.append("user_id = %s")
            params.append(user_id)
        if address_hash is not None:
            where.append("address_hash = %s")
            params.append(address_hash)
        rows = await self._db.fetch(
            "count the codes sent",
            f"SELECT count(*) FROM user_codes_sent WHERE {' AND '.join(where)}",
            params,
        )
        return int(rows[0][0])

    # -- notices and notes ----------------------------------------------------------------------

    async def count_notice(self, user_id: int, day: str) -> int:
        oldest = oldest_notice_day(day)
        if day > self._pruned_day:  # once per day and process: the days before are done
            await self._changed(
                "prune notice counts", "DELETE FROM user_notice_counts WHERE day < %s", [oldest]
            )
            self._pruned_day = day
        rows = await self._write(
            "count a notice",
            "INSERT INTO user_notice_counts (user_id, day, count) VALUES (%s, %s, 1)"
            " ON CONFLICT (user_id, day) DO UPDATE SET count = user_notice_counts.count + 1"
            " RETURNING count",
            [user_id, day],
            retry=False,
        )
        return int(rows[0][0])

    async def add_note(self, user_id: int, text: str, *, now: float) -> None:
        await self._write(
            "store a note",
            "INSERT INTO user_notes (user_id, text, created_at) VALUES (%s, %s, %s)",
            [user_id, _text(text), now],
            retry=False,
        )

    async def take_notes(self, user_id: int) -> list[str]:
        rows = await self._write(
            "take the notes",
            "DELETE FROM user_notes WHERE user_id = %s RETURNING id, text",
            [user_id],
            retry=False,
        )
        return [str(text) for _, text in sorted(rows)]

    # -- data requests --------------------------------------------------------------------------

    async def users(self) -> list[UserSummary]:
        action = "list the users"
        latest = await self._db.fetch(
            action,
            "SELECT user_id, max(at) FROM ("
            " SELECT user_id, updated_at AS at FROM user_channels"
            " UNION ALL SELECT user_id, updated_at FROM user_secrets"
            " UNION ALL SELECT user_id, created_at FROM user_pending_codes"
            " UNION ALL SELECT user_id, created_at FROM user_notes"
            " UNION ALL SELECT user_id, sent_at FROM user_codes_sent WHERE user_id IS NOT NULL"
            " UNION ALL SELECT user_id, 0.0 FROM user_notice_counts"
            ") AS every_row GROUP BY user_id ORDER BY user_id",
        )
        return user_summaries(
            latest,
            await self._db.fetch(
                action, "SELECT user_id, via FROM user_channels ORDER BY user_id, via"
            ),
            await self._db.fetch(action, "SELECT user_id FROM user_pending_codes"),
            await self._db.fetch(
                action, "SELECT user_id, count(*) FROM user_notes GROUP BY user_id"
            ),
        )

    async def export(self, user_id: int) -> dict[str, Any]:
        action = "export a user's settings"
        settings = await self.get(user_id)
        pending = await self.pending_code(user_id)
        sent = await self._db.fetch(
            action,
            "SELECT sent_at FROM user_codes_sent WHERE user_id = %s ORDER BY sent_at",
            [user_id],
        )
        counts = await self._db.fetch(
            action, "SELECT day, count FROM user_notice_counts WHERE user_id = %s", [user_id]
        )
        notes = await self._db.fetch(
            action,
            "SELECT text, created_at FROM user_notes WHERE user_id = %s ORDER BY id",
            [user_id],
        )
        return export_document(
            user_id,
            channels=settings.channels.values(),
            webhook_secret=settings.webhook_secret,
            pending=pending,
            codes_sent_at=[float(r[0]) for r in sent],
            notice_counts={str(day): int(count) for day, count in counts},
            notes=[(str(text), float(at)) for text, at in notes],
        )

    async def load(self, dump: SettingsDump, *, write: bool) -> SettingsImport:
        """Compare `dump` with these tables and, with `write`, insert the rows they lack, in one
        transaction (see the module docstring); the conflicts are listed, never overwritten.
        Without `write` nothing is changed, and tables that do not exist yet (a database not
        migrated) hold nothing. StoreError (masked) on failure."""
        source = {
            kind: [_storable(kind, row) for row in dump.rows.get(kind, ())] for kind in FORGET_KINDS
        }

        async def look(conn: Connection) -> SettingsImport:
            found = SettingsImport()
            # The set's tables are created together: one answers for all.
            if not write and not await table_exists(conn, "user_channels"):
                for kind, rows in source.items():
                    found.source[kind] = found.new[kind] = len(rows)
                return found
            async with conn.transaction():
                for kind, rows in source.items():
                    new = await _compare(conn, kind, rows, found)
                    if not write or not new:
                        continue
                    columns = DUMP_COLUMNS[kind]
                    keyed = DUMP_KEY_COLUMNS[kind] is not None
                    async with conn.cursor() as cursor:
                        await cursor.executemany(
                            f"INSERT INTO {_TABLES[kind]} ({', '.join(columns)})"
                            f" VALUES ({', '.join(['%s'] * len(columns))})"
                            + (" ON CONFLICT DO NOTHING" if keyed else ""),
                            [_insert_params(kind, row) for row in new],
                        )
                        found.copied[kind] += cursor.rowcount  # the inserts' sum
            return found

        action = "copy the users' settings" if write else "compare the users' settings"
        return await self._db.run(action, look, retry=not write)

    async def forget(self, user_id: int) -> ForgetReport:
        async def forget(conn: Connection) -> dict[str, int]:
            async def run(sql: str) -> int:
                return await _rowcount(conn, sql, [user_id])

            async with conn.transaction():
                return {
                    "channels": await run("DELETE FROM user_channels WHERE user_id = %s"),
                    "webhook secret": await run("DELETE FROM user_secrets WHERE user_id = %s"),
                    "pending codes": await run("DELETE FROM user_pending_codes WHERE user_id = %s"),
                    # Kept without the user: the address's daily limit still counts them.
                    "codes sent": await run(
                        "UPDATE user_codes_sent SET user_id = NULL WHERE user_id = %s"
                    ),
                    "notice counts": await run("DELETE FROM user_notice_counts WHERE user_id = %s"),
                    "notes": await run("DELETE FROM user_notes WHERE user_id = %s"),
                }

        return ForgetReport(await self._db.run("forget a user", forget, retry=False))
