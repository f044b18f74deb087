"""Fixtures for the fanout tests: real parts only (aiohttp sinks and an aiosmtpd server on explicit
127.0.0.1 ports, SQLite outboxes in tmp_path), a recording `send_dm`, and loguru output captured
raw (no redacting patcher), so a test sees exactly what our code logged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest
from loguru import logger

from notifier.plugins import PluginContext
from notifier.testing import HttpSink
from notifier.testing.smtp import SmtpServer, serve_smtp

from .support import DMRecorder


@pytest.fixture
async def sinks() -> AsyncIterator[Callable[..., Awaitable[HttpSink]]]:
    """Start HTTP sinks on demand: `await sinks()`, `await sinks(holding=True)` (a sink that
    hangs), `await sinks(port=...)`; all stop at the end."""
    started: list[HttpSink] = []

    async def start(*, holding: bool = False, port: int = 0) -> HttpSink:
        sink = HttpSink(port=port, holding=holding)
        await sink.start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        await sink.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with serve_smtp() as server:
        yield server


@pytest.fixture
def dms() -> DMRecorder:
    return DMRecorder()


@pytest.fixture
async def context(dms: DMRecorder) -> AsyncIterator[PluginContext]:
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-apprise")
    async with aiohttp.ClientSession() as http:
        yield PluginContext(
            http=http,
            executor=executor,
            send_dm=dms,
            discord_api_base="http://127.0.0.1:9/api/v10",
        )
    executor.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Everything logged through loguru during the test, unredacted by any patcher."""
    lines: list[str] = []
    handler = logger.add(lambda m: lines.append(str(m)), level="TRACE", format="{level} {message}")
    try:
        yield lines
    finally:
        logger.remove(handler)
