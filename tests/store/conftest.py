"""Fixtures for the store tests: a real store (files and SQLite in tmp_path) on a settable clock,
and loguru output captured as "LEVEL message" lines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from loguru import logger

from notifier.config import StorageSettings
from notifier.store import ResultStore

from .support import FakeClock


@pytest.fixture
def storage(tmp_path: Path) -> StorageSettings:
    # Short retry delays so a disk-error test sees its retries promptly.
    return StorageSettings(
        path=tmp_path / "data",
        retention_days=30,
        retention_interval=3600,
        write_retry_initial=0.01,
        write_retry_max=0.05,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(storage: StorageSettings, clock: FakeClock) -> AsyncIterator[ResultStore]:
    opened = await ResultStore.open(storage, clock=clock)
    yield opened
    await opened.close()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(
        lambda message: lines.append(f"{message.record['level'].name} {message.record['message']}"),
        level="DEBUG",
    )
    yield lines
    logger.remove(sink)
