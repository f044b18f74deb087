"""`open_store`: the store `storage.backend` names, behind the one `Store` protocol.

``sqlite`` (the default) opens `ResultStore` (files and an SQLite index under ``storage.path``);
``postgres`` opens `PostgresStore` on ``storage.postgres_dsn``. The PostgreSQL backend is imported
only here, when it is asked for: psycopg is an optional dependency (the ``postgres`` extra), and
the embedded default must start without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..config import StorageSettings
from .clock_check import Uptime, host_uptime
from .contract import Store
from .result_store import DEFAULT_MAX_STEP_BYTES, ResultStore, StorageErrorHook

__all__ = ["open_store"]


async def open_store(
    settings: StorageSettings,
    *,
    on_storage_error: StorageErrorHook | None = None,
    clock: Callable[[], float] = time.time,
    uptime: Uptime = host_uptime,
    maintain: bool = True,
    exclusive: bool | None = None,
    max_step_bytes: int = DEFAULT_MAX_STEP_BYTES,
) -> Store:
    """Open the store ``settings.backend`` names; the arguments are `ResultStore.open`'s, which
    `PostgresStore.open` takes too (``exclusive`` means nothing there: processes share it)."""
    if settings.backend == "postgres":
        from .postgres.store import PostgresStore

        return await PostgresStore.open(
            settings,
            on_storage_error=on_storage_error,
            clock=clock,
            uptime=uptime,
            maintain=maintain,
            exclusive=exclusive,
            max_step_bytes=max_step_bytes,
        )
    return await ResultStore.open(
        settings,
        on_storage_error=on_storage_error,
        clock=clock,
        uptime=uptime,
        maintain=maintain,
        exclusive=exclusive,
        max_step_bytes=max_step_bytes,
    )
