"""Fixtures for tests that run the project's real bot against the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from loguru import logger

from notifier.testing.site import DemoSite


@pytest.fixture
async def site() -> AsyncIterator[DemoSite]:
    async with DemoSite(pages=6) as running:
        yield running


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    """Every log line (with tracebacks) emitted during the test."""
    lines: list[str] = []
    sink_id = logger.add(lambda m: lines.append(str(m)), level="DEBUG", backtrace=False)
    yield lines
    logger.remove(sink_id)
