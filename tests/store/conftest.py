"""Fixtures for the store tests: a real store on a settable clock, on each backend, and loguru
output captured as "LEVEL message" lines.

The contract suite: a test that asks for `store`, `backend` or `store_settings` runs once per
backend, ``[sqlite]`` (files and SQLite in tmp_path) and ``[postgres]`` (a fresh database of its
own, from `postgres_dsn`: skipped naming the reason when no server can be found or started, a
failure with NOTIFIER_REQUIRE_POSTGRES=1). A test that looks at SQLite or the files directly is
marked ``sqlite_only`` and runs on SQLite alone. `storage` is the SQLite store's settings, as
before: tests that open `ResultStore` themselves use it and run once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import pytest
from loguru import logger

from notifier.config import StorageSettings
from notifier.store import Store, open_store

from .support import FakeClock

BACKENDS: Final = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only: a store test that looks at SQLite or the result files directly; it runs "
        "on the SQLite backend only (the others run on every backend)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("backend", ["sqlite"] if sqlite_only else BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend this run of the test is for ("sqlite" or "postgres")."""
    return str(request.param)


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
def store_settings(
    backend: str, storage: StorageSettings, request: pytest.FixtureRequest
) -> StorageSettings:
    """`storage` for the backend under test: for PostgreSQL, a database of this test's own."""
    if backend == "sqlite":
        return storage
    dsn: str = request.getfixturevalue("postgres_dsn")
    # Validated again (not model_copy): the DSN must become a SecretStr, as config.yaml's does.
    return StorageSettings.model_validate(
        {**storage.model_dump(), "backend": "postgres", "postgres_dsn": dsn}
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(store_settings: StorageSettings, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await open_store(store_settings, clock=clock)
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
