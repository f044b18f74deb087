"""Helpers for the store tests: record builders, a settable clock, metric reads, a look at what
a store holds on either backend (files for SQLite, rows for PostgreSQL), and a writer killed with
SIGKILL in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from notifier.config import StorageSettings
from notifier.records import WorkflowRecord, WorkflowStatus, new_workflow_id
from notifier.store import Store, open_store

START_S = 1_800_000_000.0  # a fixed "now" for stores opened with a FakeClock
DAY_S = 86_400.0

EXAMPLE_RESULT: dict[str, Any] = {
    "url": "https://example.com/",
    "title": "Example Domain",
    "summary": "A short page used in documentation examples.",
    "pages_analysed": 12,
    "word_count": 5123,
    "reading_time_min": 25.6,
    "top_keywords": [["example", 12], ["domain", 8], ["documentation", 5]],
    "headings": ["Example Domain", "More information"],
    "links": {"internal": 4, "external": 2},
    "pages": [
        {"url": "https://example.com/a", "title": "A", "word_count": 812},
        {"url": "https://example.com/b", "title": "B", "word_count": 1024},
    ],
}


class FakeClock:
    """The store's clock, moved by the test: retention and durations without sleeping.

    `uptime` is the host's uptime clock to go with it (`ResultStore.open(uptime=...)`), moving
    as the wall clock does: time that really passed. Without it the store reads the real uptime
    clock, which barely moves while the test advances the wall clock: a clock jump.
    """

    def __init__(self, now: float = START_S) -> None:
        self.now = now
        self.boot_id = "fake-boot"
        self.uptime_s = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Time passes: the wall clock and the uptime clock move together."""
        self.now += seconds
        self.uptime_s += seconds

    def jump(self, seconds: float) -> None:
        """The wall clock is set (wrongly, or back to right): the uptime clock does not move."""
        self.now += seconds

    def reboot(self) -> None:
        self.boot_id = f"{self.boot_id}+"
        self.uptime_s = 30.0

    def uptime(self) -> tuple[str, float]:
        return self.boot_id, self.uptime_s


def make_record(
    *,
    workflow_id: str | None = None,
    user_id: int = 1,
    command: str = "autointel",
    url: str = "https://example.com/",
    depth: str = "quick",
    created_at: float = 0.0,
    **fields: Any,
) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=new_workflow_id() if workflow_id is None else workflow_id,
        command=command,
        user_id=user_id,
        options={"url": url, "depth": depth},
        user_name=f"user{user_id}",
        created_at=created_at,
        **fields,
    )


async def finished(
    store: Store,
    record: WorkflowRecord | None = None,
    *,
    result: dict[str, Any] | None = None,
    status: WorkflowStatus = WorkflowStatus.COMPLETED,
    error: str = "",
) -> WorkflowRecord:
    """Create and finish one workflow, as the runner does."""
    record = record or make_record()
    await store.create(record)
    return (
        await store.finish(
            record.workflow_id,
            status=status,
            result=EXAMPLE_RESULT if result is None else result,
            error=error,
            reason=status.value,
        )
    ).record


def metric(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file below `root` (relative path -> bytes), to show what a step changed."""
    found: dict[str, bytes] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def result_files(root: Path) -> list[str]:
    """Every name in results/ (documents, delivery marks, temps), sorted."""
    return sorted(p.name for p in (root / "results").iterdir())


def stored(*workflow_ids: str, marked: tuple[str, ...] = ()) -> list[str]:
    """`result_files` as it should be: these results, and delivery marks for `marked`."""
    names = [f"{w}.json" for w in workflow_ids] + [f"{w}.delivered" for w in marked]
    return sorted(names)


# -- what a store holds, on either backend ---------------------------------------------------------

# Every table the PostgreSQL store writes, and the column that orders its rows.
_TABLES = {
    "workflows": "workflow_id",
    "results": "workflow_id",
    "workflow_steps": "workflow_id, step_index",
    "store_notes": "key",
}


@contextlib.asynccontextmanager
async def opened(settings: StorageSettings, **options: Any) -> AsyncIterator[Store]:
    """The store `settings` name, open for the block (`open_store`'s options), closed after it:
    on either backend what ``async with await ResultStore.open(...)`` is for SQLite."""
    store = await open_store(settings, **options)
    try:
        yield store
    finally:
        await store.close()


def sqlite_root(settings: StorageSettings) -> Path | None:
    """The folder of an SQLite store (its files can be looked at), None for PostgreSQL."""
    return settings.path if settings.backend == "sqlite" else None


async def _rows(settings: StorageSettings, query: str, *params: object) -> list[tuple[Any, ...]]:
    import psycopg

    assert settings.postgres_dsn is not None
    async with await psycopg.AsyncConnection.connect(
        settings.postgres_dsn.get_secret_value(), autocommit=True
    ) as connection:
        cursor = await connection.execute(query, params or None)
        return await cursor.fetchall()


async def sql(settings: StorageSettings, statement: str, *params: object) -> None:
    """Change the PostgreSQL store's database behind its back, as another process would."""
    import psycopg

    assert settings.postgres_dsn is not None
    async with await psycopg.AsyncConnection.connect(
        settings.postgres_dsn.get_secret_value(), autocommit=True
    ) as connection:
        await connection.execute(statement, params or None)


async def document_ids(settings: StorageSettings) -> list[str]:
    """Ids whose result document the store holds, sorted: `<id>.json` files for SQLite, rows of
    the results table for PostgreSQL."""
    root = sqlite_root(settings)
    if root is not None:
        results = root / "results"
        names = sorted(p.name for p in results.iterdir()) if results.is_dir() else []
        return [name.removesuffix(".json") for name in names if name.endswith(".json")]
    rows = await _rows(settings, "SELECT workflow_id FROM results ORDER BY workflow_id")
    return [row[0] for row in rows]


async def stored_bytes(settings: StorageSettings, workflow_id: str) -> bytes:
    """The bytes the store holds for a result: its file, or its row's document."""
    root = sqlite_root(settings)
    if root is not None:
        return (root / "results" / f"{workflow_id}.json").read_bytes()
    [(document,)] = await _rows(
        settings, "SELECT document FROM results WHERE workflow_id = %s", workflow_id
    )
    return bytes(document)


def document_path(settings: StorageSettings, workflow_id: str) -> str | None:
    """What a stored record's `path` says: the file's path in the SQLite store, None in
    PostgreSQL (the document is a row)."""
    return f"results/{workflow_id}.json" if settings.backend == "sqlite" else None


async def contents(settings: StorageSettings) -> dict[str, Any]:
    """Everything the store holds, to show what a call changed: every file under the store's
    folder, and for PostgreSQL every row of its tables too."""
    found: dict[str, Any] = files_under(settings.path) if settings.path.is_dir() else {}
    if settings.backend == "postgres":
        for table, order in _TABLES.items():
            found[table] = await _rows(settings, f"SELECT * FROM {table} ORDER BY {order}")
    return found


async def raw_bytes(settings: StorageSettings) -> bytes:
    """Every byte the store holds, as one string to search: the files, and the rows (as the
    database's text output, which shows bytea in hex: searched in both forms by callers)."""
    found = b"".join(p.read_bytes() for p in settings.path.rglob("*") if p.is_file())
    if settings.backend == "postgres":
        for table in _TABLES:
            rows = await _rows(settings, f"SELECT t::text FROM {table} AS t")
            found += b"".join(row[0].encode() for row in rows)
            for row in await _rows(settings, f"SELECT * FROM {table}"):
                found += b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    return found


# -- a writer killed with SIGKILL ---------------------------------------------------------------


async def run_killed(script: str, settings: StorageSettings, *args: str) -> None:
    """Run `script` (``python -c``) in a process of its own and wait until it has killed itself
    with SIGKILL (no close, no flush: only what reached the disk is left). Its arguments say where
    the store is, on either backend: ``sys.argv[1:4]`` are the path, the backend and the DSN
    ("" for none); `args` follow."""
    dsn = settings.postgres_dsn
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(settings.path),
        settings.backend,
        "" if dsn is None else dsn.get_secret_value(),
        *args,
    )
    assert await process.wait() == -signal.SIGKILL
