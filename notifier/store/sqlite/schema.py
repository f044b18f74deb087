"""The index's SQLite schema and its upgrades, in one place.

`prepare` runs on every open: WAL and the connection's pragmas, then the schema brought to
`SCHEMA_VERSION` (``PRAGMA user_version``), idempotently, whatever version the file had; a file
from a newer program is refused rather than guessed at. Version 2 added `workflow_blocks` (the URL
search stops early), version 3 the `WHEN` on the FTS update trigger (a finish no longer rewrites a
URL's trigrams), version 4 `workflow_steps` and `workflows.resumes` (durable workflows: a resumed
workflow replays its recorded steps), version 5 moved the steps out into step files
(`notifier.store.step_log`: the store moves a version 4 table's rows there at start, then drops
it).
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Final

import aiosqlite
from loguru import logger

from ...errors import StoreError

__all__ = ["BLOCK_BITS", "BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "prepare"]

# 2: workflow_blocks (URL search stops early); 3: see _FTS_UPDATE; 4: workflow_steps, resumes;
# 5: steps in files (`step_log`), workflow_steps left for the store to move and drop
SCHEMA_VERSION: Final = 5
BUSY_TIMEOUT_MS: Final = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    id               INTEGER PRIMARY KEY,
    workflow_id      TEXT    NOT NULL UNIQUE CHECK (length(workflow_id) = 32),
    command          TEXT    NOT NULL,
    user_id          INTEGER NOT NULL,
    user_name        TEXT    NOT NULL DEFAULT '',
    guild_id         INTEGER,
    channel_id       INTEGER,
    ephemeral        INTEGER NOT NULL DEFAULT 0,
    options          TEXT    NOT NULL DEFAULT '{}',
    url              TEXT    NOT NULL DEFAULT '',
    depth            TEXT    NOT NULL DEFAULT '',
    status           TEXT    NOT NULL,
    stage            TEXT    NOT NULL DEFAULT '',
    progress         REAL    NOT NULL DEFAULT 0,
    created_at       REAL    NOT NULL,
    finished_at      REAL,
    size_bytes       INTEGER,
    delivery_state   TEXT    NOT NULL DEFAULT 'pending',
    delivered_via    TEXT,
    delivered_at     REAL,
    error            TEXT    NOT NULL DEFAULT '',
    path             TEXT,
    purge_started_at REAL,
    resumes          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS workflows_user_created ON workflows (user_id, created_at);
CREATE INDEX IF NOT EXISTS workflows_created ON workflows (created_at);
CREATE INDEX IF NOT EXISTS workflows_status_created ON workflows (status, created_at);
CREATE INDEX IF NOT EXISTS workflows_command_created ON workflows (command, created_at);
CREATE INDEX IF NOT EXISTS workflows_finished ON workflows (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflows_undelivered ON workflows (finished_at)
    WHERE delivery_state = 'pending' AND finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflows_durations ON workflows (command, depth, finished_at)
    WHERE status = 'completed';
CREATE INDEX IF NOT EXISTS workflows_purging ON workflows (purge_started_at)
    WHERE purge_started_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS workflow_blocks (
    block  INTEGER PRIMARY KEY,
    newest REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS store_notes (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS workflow_blocks_insert AFTER INSERT ON workflows BEGIN
    INSERT INTO workflow_blocks (block, newest) SELECT new.id >> 10, new.created_at
        WHERE NOT EXISTS (SELECT 1 FROM workflow_blocks WHERE block = new.id >> 10);
    UPDATE workflow_blocks SET newest = new.created_at
        WHERE block = new.id >> 10 AND newest < new.created_at;
END;
CREATE TRIGGER IF NOT EXISTS workflow_blocks_update AFTER UPDATE OF created_at ON workflows BEGIN
    INSERT INTO workflow_blocks (block, newest) SELECT new.id >> 10, new.created_at
        WHERE NOT EXISTS (SELECT 1 FROM workflow_blocks WHERE block = new.id >> 10);
    UPDATE workflow_blocks SET newest = new.created_at
        WHERE block = new.id >> 10 AND newest < new.created_at;
END;
"""
# workflows.resumes: how often a workflow found running at start was resumed (runner.max_resumes).
# store_notes: what the store keeps about itself rather than about a workflow (retention's last
# sweep, see `notifier.store.clock_check`). Added without a version bump: an older program ignores
# the table, so going back to it stays possible.
# workflow_blocks: for each run of 1,024 row ids, the newest `created_at` it ever held (deletes
# leave it as is: still an upper bound). A URL search walks FTS matches newest id first and stops
# once no row below the walk can be newer than the last row of the page it has (see
# `ResultIndex._search_url`). Ids follow insertion, which is creation order for the bot's own
# rows, so the walk usually stops after one or two pages; rows indexed later (reconciliation,
# imports) only make it walk further, never give a wrong order. (No INSERT OR IGNORE in the
# triggers: an upsert's ON CONFLICT would override it and fail on an existing block.)
BLOCK_BITS: Final = 10
_FILL_BLOCKS: Final = (
    "INSERT OR REPLACE INTO workflow_blocks (block, newest) "
    f"SELECT id >> {BLOCK_BITS}, max(created_at) FROM workflows GROUP BY id >> {BLOCK_BITS}"
)

_FTS_SCHEMA = """
CREATE VIRTUAL TABLE workflow_urls USING fts5(
    url, content='workflows', content_rowid='id', tokenize='trigram'
);
CREATE TRIGGER workflow_urls_insert AFTER INSERT ON workflows BEGIN
    INSERT INTO workflow_urls (rowid, url) VALUES (new.id, new.url);
END;
CREATE TRIGGER workflow_urls_delete AFTER DELETE ON workflows BEGIN
    INSERT INTO workflow_urls (workflow_urls, rowid, url) VALUES ('delete', old.id, old.url);
END;
"""
# Only when the URL really changed: an UPDATE that merely names `url` (re-indexing a result from
# its file) would otherwise rewrite every trigram of the URL, two thirds of the pages a finish
# wrote before schema version 3, whose trigger had no WHEN.
_FTS_UPDATE = """
CREATE TRIGGER IF NOT EXISTS workflow_urls_update AFTER UPDATE OF url ON workflows
WHEN old.url IS NOT new.url BEGIN
    INSERT INTO workflow_urls (workflow_urls, rowid, url) VALUES ('delete', old.id, old.url);
    INSERT INTO workflow_urls (rowid, url) VALUES (new.id, new.url);
END;
"""


async def _add_resumes(db: aiosqlite.Connection) -> None:
    """`workflows.resumes` in a file made before version 4 (CREATE TABLE IF NOT EXISTS left its
    older table as it was). Looked up first, so a file that has it already is left alone."""
    async with db.execute("PRAGMA table_info(workflows)") as cursor:
        columns = {str(row[1]) for row in await cursor.fetchall()}
    if "resumes" not in columns:
        await db.execute("ALTER TABLE workflows ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0")


async def prepare(db: aiosqlite.Connection) -> bool:
    """Bring the index at `db` to `SCHEMA_VERSION`; return whether URL search has FTS5."""
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    async with db.execute("PRAGMA journal_mode = WAL") as cursor:
        row = await cursor.fetchone()
    if row is None or str(row[0]).lower() != "wal":
        logger.warning("index: WAL mode unavailable here (journal_mode={})", row)
    await db.execute("PRAGMA synchronous = FULL")
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"index schema version {version} is newer than this program's {SCHEMA_VERSION}"
        )
    if version < 3:  # replaced below by the version with WHEN (_FTS_UPDATE)
        await db.execute("DROP TRIGGER IF EXISTS workflow_urls_update")
    await db.executescript(_SCHEMA)
    if version < 4:
        await _add_resumes(db)
    if version < 2:
        await db.execute(_FILL_BLOCKS)  # rows indexed before the table existed
    await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    async with db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'workflow_urls'"
    ) as cursor:
        if await cursor.fetchone() is not None:
            await db.executescript(_FTS_UPDATE)
            return True
    try:
        await db.executescript("BEGIN;" + _FTS_SCHEMA + _FTS_UPDATE + "COMMIT;")
    except sqlite3.OperationalError as exc:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        logger.info("index: no FTS5 trigram tokenizer ({}); URL search will scan", exc)
        return False
    # Rows written before FTS existed (an index created by an SQLite without it).
    await db.execute("INSERT INTO workflow_urls (workflow_urls) VALUES ('rebuild')")
    return True
