"""The users' own notification settings in SQLite: ``<storage.path>/users.sqlite3``.

The methods and what they mean are `notifier.store.user_settings.UserSettingsStore`'s; this says
how the file keeps them.

Durable when a call returns.
    Reads use an aiosqlite connection; writes go through a group-committing `SQLiteWriter` (its
    own thread and connection, ``synchronous=FULL`` in WAL mode), so a write has been fsynced
    when its call returns and kill -9 of the bot loses nothing it was told was stored. Each
    write is one statement (atomic, several callers sharing one fsync) except `forget` and
    `log_code_sent`, which are a few statements in one transaction of their own. The counters
    (`count_notice`, `count_wrong_code`, `record_failure`) are one ``UPDATE ... RETURNING`` or
    upsert each, so two callers never both read the same count. The CLI may open the file
    beside a running bot: WAL lets it, and ``busy_timeout`` makes either wait out the other's
    commit instead of failing.

A damaged file is refused, not replaced.
    The index and the outbox can be rebuilt, so a damaged one is moved to quarantine and the bot
    starts without it. These settings are the only copy of what users chose (a verified address,
    the webhook secret their receiver checks), so a file SQLite finds damaged (``quick_check``
    at open, or a "not a database" / "malformed" error: `notifier.groupcommit.damaged`) is a
    StoreError naming the file, and the file is left where it is for the operator to restore or
    move aside. Starting silently with no settings would stop every user's notices without a
    word to anyone.

Schema.
    ``PRAGMA user_version`` is `SCHEMA_VERSION`; the tables are created in one transaction with
    the version, so a crash leaves the old version or the new one. A file from a newer program
    (a higher version) is refused in words rather than guessed at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import aiosqlite

from ...errors import StoreError
from ...groupcommit.damaged import QUICK_CHECK, integrity_problem, is_damaged
from ...groupcommit.sqlite_writer import SQLiteWriter
from .. import files
from ..user_settings import (
    CODES_SENT_KEPT_S,
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

__all__ = ["SCHEMA_VERSION", "SQLiteUserSettings", "read_dump"]

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_MS: Final = 5000
_WRITER_PRAGMAS: Final = (f"busy_timeout = {BUSY_TIMEOUT_MS}", "synchronous = FULL")

_SCHEMA: Final = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS channels (
    user_id          INTEGER NOT NULL,
    via              TEXT    NOT NULL,
    target           TEXT    NOT NULL DEFAULT '',
    events           TEXT    NOT NULL DEFAULT '[]',
    workflows        TEXT    NOT NULL DEFAULT '[]',
    enabled          INTEGER NOT NULL DEFAULT 1,
    disabled_reason  TEXT    NOT NULL DEFAULT '',
    failures         INTEGER NOT NULL DEFAULT 0,
    updated_at       REAL    NOT NULL,
    PRIMARY KEY (user_id, via)
);
CREATE TABLE IF NOT EXISTS secrets (
    user_id          INTEGER PRIMARY KEY,
    webhook_secret   TEXT    NOT NULL,
    updated_at       REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_codes (
    user_id          INTEGER PRIMARY KEY,
    address          TEXT    NOT NULL,
    code_hash        TEXT    NOT NULL,
    expires_at       REAL    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    events           TEXT    NOT NULL DEFAULT '[]',
    workflows        TEXT    NOT NULL DEFAULT '[]',
    created_at       REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS codes_sent (
    id               INTEGER PRIMARY KEY,
    user_id          INTEGER,
    address_hash     TEXT    NOT NULL,
    sent_at          REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS codes_sent_user ON codes_sent (user_id, sent_at);
CREATE INDEX IF NOT EXISTS codes_sent_address ON codes_sent (address_hash, sent_at);
CREATE INDEX IF NOT EXISTS codes_sent_time ON codes_sent (sent_at);
CREATE TABLE IF NOT EXISTS notice_counts (
    user_id          INTEGER NOT NULL,
    day              TEXT    NOT NULL,
    count            INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX IF NOT EXISTS notice_counts_day ON notice_counts (day);
CREATE TABLE IF NOT EXISTS notes (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL,
    text             TEXT    NOT NULL,
    created_at       REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_user ON notes (user_id, id);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

_CHANNEL_COLUMNS: Final = (
    "via, target, events, workflows, enabled, disabled_reason, failures, updated_at"
)


def _channel(row: Sequence[Any]) -> ChannelSetting:
    via, target, events, workflows, enabled, reason, failures, updated_at = row
    return ChannelSetting(
        via=str(via),
        target=str(target),
        events=tuple(json.loads(events)),
        workflows=tuple(json.loads(workflows)),
        enabled=bool(enabled),
        disabled_reason=str(reason),
        failures=int(failures),
        updated_at=float(updated_at),
    )


def _dumped_channel(channel: ChannelSetting) -> tuple[Any, ...]:
    """A channel's columns after the user id, as `SettingsDump` holds them."""
    return (
        channel.via,
        channel.target,
        channel.events,
        channel.workflows,
        channel.enabled,
        channel.disabled_reason,
        channel.failures,
        channel.updated_at,
    )


def _lists(events: str, workflows: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(map(str, json.loads(events))), tuple(map(str, json.loads(workflows)))


def _prepare_file(path: Path) -> None:
    """The folder (0700 if it is made here; an existing one is left as it is) and the file
    (0600, never through a symlink; SQLite gives -wal and -shm the file's mode): the settings
    hold users' addresses and secrets."""
    path.parent.mkdir(mode=files.DIR_MODE, parents=True, exist_ok=True)
    files.ensure_private_file(path)
    files.make_private([path.with_name(f"{path.name}{suffix}") for suffix in ("-wal", "-shm")])


def _damaged(path: Path, problem: str) -> StoreError:
    return StoreError(
        f"the users' settings file {path} is damaged ({problem}); it was left as it is (it is "
        "the only copy of what users chose with /notify): restore it from a backup, or move it "
        "aside to start with no user settings"
    )


def _newer(path: Path, version: int) -> StoreError:
    return StoreError(
        f"the users' settings file {path}: schema version {version} is newer than this "
        f"program's {SCHEMA_VERSION} (a newer notifier wrote it): upgrade the program"
    )


class SQLiteUserSettings:
    """Users' settings in one SQLite file (see the module docstring). Open with
    ``await SQLiteUserSettings.open(path)``; close with ``await settings.close()``."""

    def __init__(self, db: aiosqlite.Connection, writer: SQLiteWriter, path: Path) -> None:
        """Use `open`; this only assembles open connections."""
        self._db = db
        self._writer = writer
        self.path = path
        self._pruned_day = ""  # the last day whose older notice counts this process pruned

    @classmethod
    async def open(cls, path: Path) -> SQLiteUserSettings:
        """Open (creating it and its folder if needed) with WAL and a full fsync per commit.
        StoreError naming the file if it is damaged (left in place), from a newer program, or
        cannot be opened."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="users-open")
        try:
            await asyncio.get_running_loop().run_in_executor(executor, _prepare_file, path)
        except OSError as exc:
            raise StoreError(f"cannot prepare the users' settings file {path}: {exc}") from exc
        finally:
            executor.shutdown(wait=False)
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            if is_damaged(exc):
                raise _damaged(path, str(exc)) from exc
            raise StoreError(f"cannot open the users' settings file {path}: {exc}") from exc
        try:
            await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # Before anything writes: a damaged file is refused as it was found.
            if problem := integrity_problem(await db.execute_fetchall(QUICK_CHECK)):
                raise _damaged(path, problem)
            version = int(next(iter(await db.execute_fetchall("PRAGMA user_version")))[0])
            if version > SCHEMA_VERSION:
                raise _newer(path, version)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            if version < SCHEMA_VERSION:
                await db.executescript(_SCHEMA)
            writer = await SQLiteWriter.open(path, _WRITER_PRAGMAS, name="users")
        except sqlite3.Error as exc:
            await db.close()
            if is_damaged(exc):
                raise _damaged(path, str(exc)) from exc
            raise StoreError(f"cannot set up the users' settings file {path}: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        return cls(db, writer, path)

    async def close(self) -> None:
        try:
            await self._writer.close()
        finally:
            await self._db.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _error(self, action: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"users' settings {self.path}: cannot {action}: {exc}")

    async def _read(
        self, action: str, sql: str, params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        try:
            return [tuple(row) for row in await self._db.execute_fetchall(sql, params)]
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc

    async def _write(
        self, action: str, sql: str, params: Sequence[Any] = ()
    ) -> tuple[int, list[tuple[Any, ...]]]:
        """One statement, committed (fsynced) when this returns: (rows changed, rows returned)."""
        try:
            written = await self._writer.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc
        return written.rowcount, written.rows

    # -- channels and the secret --------------------------------------------------------------

    async def get(self, user_id: int) -> UserSettings:
        rows = await self._read(
            "read a user's settings",
            f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE user_id = ? ORDER BY via",
            (user_id,),
        )
        secret = await self._read(
            "read a user's settings",
            "SELECT webhook_secret FROM secrets WHERE user_id = ?",
            (user_id,),
        )
        channels = {channel.via: channel for channel in map(_channel, rows)}
        return UserSettings(user_id, channels, str(secret[0][0]) if secret else None)

    async def put_channel(self, user_id: int, setting: ChannelSetting, *, now: float) -> None:
        await self._write(
            "store a channel",
            "INSERT INTO channels (user_id, via, target, events, workflows, enabled,"
            " disabled_reason, failures, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)"
            " ON CONFLICT (user_id, via) DO UPDATE SET target = excluded.target,"
            " events = excluded.events, workflows = excluded.workflows,"
            " enabled = excluded.enabled, disabled_reason = excluded.disabled_reason,"
            " failures = 0, updated_at = excluded.updated_at",
            (
                user_id,
                setting.via,
                setting.target,
                json.dumps(list(setting.events)),
                json.dumps(list(setting.workflows)),
                int(setting.enabled),
                setting.disabled_reason,
                now,
            ),
        )

    async def disable_channel(self, user_id: int, via: str, reason: str, *, now: float) -> bool:
        changed, _ = await self._write(
            "turn a channel off",
            "UPDATE channels SET enabled = 0, disabled_reason = ?, updated_at = ?"
            " WHERE user_id = ? AND via = ?",
            (reason, now, user_id, via),
        )
        return changed > 0

    async def remove_channel(self, user_id: int, via: str) -> bool:
        changed, _ = await self._write(
            "remove a channel",
            "DELETE FROM channels WHERE user_id = ? AND via = ?",
            (user_id, via),
        )
        return changed > 0

    async def record_failure(self, user_id: int, via: str, *, now: float) -> int:
        _, rows = await self._write(
            "count a failed delivery",
            "UPDATE channels SET failures = failures + 1, updated_at = ?"
            " WHERE user_id = ? AND via = ? RETURNING failures",
            (now, user_id, via),
        )
        return int(rows[0][0]) if rows else 0

    async def reset_failures(self, user_id: int, via: str) -> None:
        await self._write(
            "reset failed deliveries",
            "UPDATE channels SET failures = 0 WHERE user_id = ? AND via = ? AND failures != 0",
            (user_id, via),
        )

    async def set_webhook_secret(self, user_id: int, secret: str, *, now: float) -> None:
        await self._write(
            "store a webhook secret",
            "INSERT INTO secrets (user_id, webhook_secret, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET webhook_secret = excluded.webhook_secret,"
            " updated_at = excluded.updated_at",
            (user_id, secret, now),
        )

    # -- e-mail verification --------------------------------------------------------------------

    async def put_code(self, user_id: int, code: PendingCode, *, now: float) -> None:
        await self._write(
            "store a verification code",
            "INSERT INTO pending_codes (user_id, address, code_hash, expires_at, attempts,"
            " events, workflows, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET address = excluded.address,"
            " code_hash = excluded.code_hash, expires_at = excluded.expires_at,"
            " attempts = excluded.attempts, events = excluded.events,"
            " workflows = excluded.workflows, created_at = excluded.created_at",
            (
                user_id,
                code.address,
                code.code_hash,
                code.expires_at,
                code.attempts,
                json.dumps(list(code.events)),
                json.dumps(list(code.workflows)),
                now,
            ),
        )

    async def pending_code(self, user_id: int) -> PendingCode | None:
        rows = await self._read(
            "read a verification code",
            "SELECT address, code_hash, expires_at, attempts, events, workflows"
            " FROM pending_codes WHERE user_id = ?",
            (user_id,),
        )
        if not rows:
            return None
        address, code_hash, expires_at, attempts, events, workflows = rows[0]
        return PendingCode(
            str(address),
            str(code_hash),
            float(expires_at),
            int(attempts),
            tuple(json.loads(events)),
            tuple(json.loads(workflows)),
        )

    async def count_wrong_code(self, user_id: int) -> int:
        _, rows = await self._write(
            "count a wrong code",
            "UPDATE pending_codes SET attempts = attempts + 1 WHERE user_id = ? RETURNING attempts",
            (user_id,),
        )
        return int(rows[0][0]) if rows else 0

    async def delete_code(self, user_id: int) -> None:
        await self._write(
            "delete a verification code", "DELETE FROM pending_codes WHERE user_id = ?", (user_id,)
        )

    async def log_code_sent(self, user_id: int, address_hash: str, *, now: float) -> None:
        def log(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM codes_sent WHERE sent_at < ?", (now - CODES_SENT_KEPT_S,))
            conn.execute(
                "INSERT INTO codes_sent (user_id, address_hash, sent_at) VALUES (?, ?, ?)",
                (user_id, address_hash, now),
            )

        try:
            await self._writer.run(log)
        except sqlite3.Error as exc:
            raise self._error("record a code sent", exc) from exc

    async def codes_sent_since(
        self, *, since: float, user_id: int | None = None, address_hash: str | None = None
    ) -> int:
        where: list[str] = ["sent_at >= ?"]
        params: list[Any] = [since]
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if address_hash is not None:
            where.append("address_hash = ?")
            params.append(address_hash)
        rows = await self._read(
            "count the codes sent",
            f"SELECT COUNT(*) FROM codes_sent WHERE {' AND '.join(where)}",
            params,
        )
        return int(rows[0][0])

    # -- notices and notes ----------------------------------------------------------------------

    async def count_notice(self, user_id: int, day: str) -> int:
        oldest = oldest_notice_day(day)
        if day > self._pruned_day:  # once per day and process: the days before are done
            await self._write(
                "prune notice counts", "DELETE FROM notice_counts WHERE day < ?", (oldest,)
            )
            self._pruned_day = day
        _, rows = await self._write(
            "count a notice",
            "INSERT INTO notice_counts (user_id, day, count) VALUES (?, ?, 1)"
            " ON CONFLICT (user_id, day) DO UPDATE SET count = count + 1 RETURNING count",
            (user_id, day),
        )
        return int(rows[0][0])

    async def add_note(self, user_id: int, text: str, *, now: float) -> None:
        await self._write(
            "store a note",
            "INSERT INTO notes (user_id, text, created_at) VALUES (?, ?, ?)",
            (user_id, text, now),
        )

    async def take_notes(self, user_id: int) -> list[str]:
        # Asked after every command a user runs; most owe no note: a read on the reader's
        # connection, not a statement queued behind the writer's commits.
        owed = "SELECT 1 FROM notes WHERE user_id = ? LIMIT 1"
        if not await self._read("look for notes", owed, (user_id,)):
            return []
        _, rows = await self._write(
            "take the notes", "DELETE FROM notes WHERE user_id = ? RETURNING id, text", (user_id,)
        )
        return [str(text) for _, text in sorted(rows)]

    # -- data requests --------------------------------------------------------------------------

    async def users(self) -> list[UserSummary]:
        action = "list the users"
        latest = await self._read(
            action,
            "SELECT user_id, MAX(at) FROM ("
            " SELECT user_id, updated_at AS at FROM channels"
            " UNION ALL SELECT user_id, updated_at FROM secrets"
            " UNION ALL SELECT user_id, created_at FROM pending_codes"
            " UNION ALL SELECT user_id, created_at FROM notes"
            " UNION ALL SELECT user_id, sent_at FROM codes_sent WHERE user_id IS NOT NULL"
            " UNION ALL SELECT user_id, 0.0 FROM notice_counts"
            ") GROUP BY user_id ORDER BY user_id",
        )
        return user_summaries(
            latest,
            await self._read(action, "SELECT user_id, via FROM channels ORDER BY user_id, via"),
            await self._read(action, "SELECT user_id FROM pending_codes"),
            await self._read(action, "SELECT user_id, COUNT(*) FROM notes GROUP BY user_id"),
        )

    async def export(self, user_id: int) -> dict[str, Any]:
        action = "export a user's settings"
        settings = await self.get(user_id)
        pending = await self.pending_code(user_id)
        sent = await self._read(
            action, "SELECT sent_at FROM codes_sent WHERE user_id = ? ORDER BY sent_at", (user_id,)
        )
        counts = await self._read(
            action, "SELECT day, count FROM notice_counts WHERE user_id = ?", (user_id,)
        )
        notes = await self._read(
            action,
            "SELECT text, created_at FROM notes WHERE user_id = ? ORDER BY id",
            (user_id,),
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

    async def forget(self, user_id: int) -> ForgetReport:
        def forget(conn: sqlite3.Connection) -> dict[str, int]:
            def run(sql: str) -> int:
                cursor = conn.execute(sql, (user_id,))
                with contextlib.closing(cursor):
                    return cursor.rowcount

            return {
                "channels": run("DELETE FROM channels WHERE user_id = ?"),
                "webhook secret": run("DELETE FROM secrets WHERE user_id = ?"),
                "pending codes": run("DELETE FROM pending_codes WHERE user_id = ?"),
                # Kept without the user: the address's daily limit still counts them.
                "codes sent": run("UPDATE codes_sent SET user_id = NULL WHERE user_id = ?"),
                "notice counts": run("DELETE FROM notice_counts WHERE user_id = ?"),
                "notes": run("DELETE FROM notes WHERE user_id = ?"),
            }

        try:
            deleted: dict[str, int] = await self._writer.run(forget)
        except sqlite3.Error as exc:
            raise self._error("forget a user", exc) from exc
        return ForgetReport(deleted)


_DUMP_QUERIES: Final = {
    "channels": f"SELECT user_id, {_CHANNEL_COLUMNS} FROM channels ORDER BY user_id, via",
    "webhook secret": "SELECT user_id, webhook_secret, updated_at FROM secrets ORDER BY user_id",
    "pending codes": "SELECT user_id, address, code_hash, expires_at, attempts, events,"
    " workflows, created_at FROM pending_codes ORDER BY user_id",
    "codes sent": "SELECT user_id, address_hash, sent_at FROM codes_sent ORDER BY id",
    "notice counts": "SELECT user_id, day, count FROM notice_counts ORDER BY user_id, day",
    "notes": "SELECT user_id, text, created_at FROM notes ORDER BY id",
}


async def read_dump(path: Path) -> SettingsDump | None:
    """Every row of the settings file at `path` as plain values (`SettingsDump`: the columns
    `DUMP_COLUMNS` names), read in one transaction so the kinds agree with one another: what
    ``notifier store migrate`` copies into PostgreSQL. None when there is no file.

    Read only (``mode=ro``), unlike `SQLiteUserSettings.open`: a dry run changes nothing, so
    the file is neither created, migrated, switched to WAL nor re-moded here; a file the bot never
    gave its schema holds no rows. StoreError naming the file if it is damaged, from a newer
    program, or cannot be read."""
    executor = ThreadPoolExecutor(1, thread_name_prefix="users-dump")
    try:
        return await asyncio.get_running_loop().run_in_executor(executor, _read_dump, path)
    finally:
        executor.shutdown(wait=False)


def _read_dump(path: Path) -> SettingsDump | None:
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the users' settings file {path}: {exc}") from exc
    with contextlib.closing(conn):
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if problem := integrity_problem(conn.execute(QUICK_CHECK).fetchall()):
                raise _damaged(path, problem)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise _newer(path, version)
            if version == 0:
                return SettingsDump({kind: [] for kind in _DUMP_QUERIES})
            conn.execute("BEGIN")
            read = {kind: conn.execute(sql).fetchall() for kind, sql in _DUMP_QUERIES.items()}
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if is_damaged(exc):
                raise _damaged(path, str(exc)) from exc
            raise StoreError(f"cannot read the users' settings file {path}: {exc}") from exc
    rows: dict[str, list[tuple[Any, ...]]] = {
        "channels": [(int(r[0]), *_dumped_channel(_channel(r[1:]))) for r in read["channels"]],
        "webhook secret": [(int(u), str(s), float(t)) for u, s, t in read["webhook secret"]],
        "pending codes": [
            (int(u), str(a), str(h), float(e), int(n), *_lists(ev, wf), float(t))
            for u, a, h, e, n, ev, wf, t in read["pending codes"]
        ],
        "codes sent": [
            (None if u is None else int(u), str(h), float(t)) for u, h, t in read["codes sent"]
        ],
        "notice counts": [(int(u), str(d), int(n)) for u, d, n in read["notice counts"]],
        "notes": [(int(u), str(text), float(t)) for u, text, t in read["notes"]],
    }
    return SettingsDump(rows)
