"""The page workers: real child processes, limited per page in CPU, wall clock and memory,
killed on cancellation, bounded in number, replaced after a death, and holding no secret.

A worker is made to hang deterministically with SIGSTOP before it is given a page (it then uses
no CPU and never answers), so the wall-clock, cancellation and shutdown tests do not depend on
how fast this machine parses. The
CPU-limit page is one tag with 60,000 distinct attributes: libxml2 compares each attribute's name
with every earlier one (about 3 s here), so 0.2 s of CPU is far from enough on any machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from yarl import URL

from notifier.testing import wait_until
from notifier.workflows.pagepool import PagePool, PageRejected

SITE = URL("http://site.test/")
# Hang guard only: a broken cancellation path must fail the test, not freeze the suite.
HANG_GUARD_S = 60
CPU_HOG = ("<a" + "".join(f" a{i}=1" for i in range(60_000)) + ">x</a>").encode()
PAGE = b"<title>Fine</title><p>Widgets and gadgets.</p><a href='/next'>next</a>"


def environ_of(pid: int) -> bytes:
    """The environment a process was started with (a few hundred bytes of procfs)."""
    return Path(f"/proc/{pid}/environ").read_bytes()


def gone(pid: int) -> bool:
    """The process has exited and been reaped (no zombie left behind)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
async def pool() -> AsyncIterator[PagePool]:
    workers = PagePool(workers=1, page_cpu_s=0.2, page_wall_s=2.0)
    try:
        yield workers
    finally:
        await workers.close()


async def analyse(pool: PagePool, body: bytes, max_bytes: int = 4 * 1024 * 1024) -> str:
    """The page's title, or the reason it was rejected."""
    try:
        summary = await pool.analyse(body, url=SITE, site=SITE, charset=None, max_bytes=max_bytes)
    except PageRejected as exc:
        return f"rejected: {exc.reason}"
    return summary.title


async def stopped_workers(pool: PagePool) -> list[int]:
    """Start every worker of `pool` and stop them (SIGSTOP): the pages they get next stay in
    progress until they are killed."""
    titles = await asyncio.gather(*(analyse(pool, PAGE) for _ in range(pool.size)))
    assert titles == ["Fine"] * pool.size and len(pool.pids) == pool.size
    for pid in pool.pids:
        os.kill(pid, signal.SIGSTOP)
    return pool.pids


async def test_a_page_is_analysed_in_a_worker_process(pool: PagePool) -> None:
    summary = await pool.analyse(PAGE, url=SITE, site=SITE, charset=None, max_bytes=4096)
    assert summary.title == "Fine"
    assert summary.word_count == 4  # "next" is visible too
    assert [link for link, _ in summary.links] == ["http://site.test/next"]
    assert len(pool.pids) == 1 and pool.pids[0] != os.getpid()


async def test_a_page_over_its_cpu_limit_fails_and_the_next_page_is_served(pool: PagePool) -> None:
    assert (
        await analyse(pool, CPU_HOG) == "rejected: analysing the page used more than 0.2 s of CPU"
    )
    assert await analyse(pool, PAGE) == "Fine"


async def test_a_page_over_its_wall_clock_limit_fails_and_its_worker_is_killed(
    pool: PagePool,
) -> None:
    (pid,) = await stopped_workers(pool)
    async with asyncio.timeout(HANG_GUARD_S):
        assert await analyse(pool, PAGE) == "rejected: analysing the page took longer than 2 s"
    await wait_until(lambda: gone(pid), what=f"worker {pid} killed and reaped")
    assert await analyse(pool, PAGE) == "Fine"
    assert pool.started == 2


async def test_cancelling_mid_page_kills_the_worker_at_once() -> None:
    slow = PagePool(workers=1, page_cpu_s=60.0)  # no limit would stop this page soon
    try:
        (pid,) = await stopped_workers(slow)
        task = asyncio.create_task(analyse(slow, CPU_HOG))
        await wait_until(lambda: slow.busy_pids == [pid], what="the page sent to the worker")
        task.cancel()
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(asyncio.CancelledError):
                await task
        await wait_until(lambda: gone(pid), what=f"worker {pid} killed and reaped")
        assert slow.pids == []
        assert await analyse(slow, PAGE) == "Fine"  # a fresh worker takes its place
    finally:
        await slow.close()


async def test_a_page_over_its_memory_limit_fails() -> None:
    small = PagePool(workers=1, page_cpu_s=30.0, memory_bytes=128 * 1024 * 1024)
    try:
        assert await analyse(small, PAGE) == "Fine"
        hungry = b"<a>" * (3 * 1024 * 1024)  # 9 MiB of elements: a tree of several hundred MB
        reason = await analyse(small, hungry, max_bytes=len(hungry))
        assert reason == "rejected: analysing the page needed more than 128 MiB of memory"
        assert await analyse(small, PAGE) == "Fine"
    finally:
        await small.close()


@pytest.mark.parametrize(
    ("wbits", "encoding"), [(31, "gzip"), (31, "x-gzip"), (15, "deflate"), (-15, "deflate")]
)
async def test_compressed_pages_are_inflated_in_the_worker(
    pool: PagePool, wbits: int, encoding: str
) -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    body = packer.compress(PAGE) + packer.flush()
    summary = await pool.analyse(
        body, url=SITE, site=SITE, charset=None, encoding=encoding, max_bytes=len(PAGE)
    )
    assert summary.title == "Fine"


async def test_a_gzip_bomb_stops_at_the_size_limit(pool: PagePool) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = packer.compress(b"<title>Bomb</title>" + b" " * (256 * 1024 * 1024)) + packer.flush()
    assert len(bomb) < 300_000  # about 1,000 to 1
    with pytest.raises(PageRejected) as caught:
        await pool.analyse(
            bomb, url=SITE, site=SITE, charset=None, encoding="gzip", max_bytes=1024 * 1024
        )
    assert caught.value.reason == "the page is larger than 1,048,576 bytes"
    assert await analyse(pool, PAGE) == "Fine"


async def test_damaged_compressed_data_fails_the_page(pool: PagePool) -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    body = (packer.compress(PAGE * 10) + packer.flush())[:-20]
    with pytest.raises(PageRejected) as caught:
        await pool.analyse(body, url=SITE, site=SITE, charset=None, encoding="gzip", max_bytes=4096)
    assert caught.value.reason == "the page's compressed data is damaged"


async def test_at_most_the_configured_number_of_workers_run(pool: PagePool) -> None:
    titles = await asyncio.gather(*(analyse(pool, PAGE) for _ in range(8)))
    assert titles == ["Fine"] * 8
    assert pool.started == 1 and len(pool.pids) == 1


async def test_waiting_pages_are_served_lowest_priority_first(pool: PagePool) -> None:
    (pid,) = await stopped_workers(pool)
    finished: list[str] = []

    async def page(name: str, priority: int) -> None:
        body = f"<title>{name}</title>".encode()
        summary = await pool.analyse(
            body, url=SITE, site=SITE, charset=None, max_bytes=4096, priority=priority
        )
        finished.append(summary.title)

    first = asyncio.create_task(page("in the worker", 9))
    await wait_until(lambda: pool.busy_pids == [pid], what="the first page sent")
    late = asyncio.create_task(page("30th page of a long crawl", 30))
    await asyncio.sleep(0)
    starts = [asyncio.create_task(page(f"start page {i}", 0)) for i in range(2)]
    await asyncio.sleep(0)
    os.kill(pid, signal.SIGCONT)
    async with asyncio.timeout(HANG_GUARD_S):
        await asyncio.gather(first, late, *starts)
    assert finished == [
        "in the worker",
        "start page 0",
        "start page 1",
        "30th page of a long crawl",
    ]


async def test_close_kills_every_worker_and_refuses_later_pages() -> None:
    two = PagePool(workers=2, page_cpu_s=60.0)
    pids = await stopped_workers(two)
    pages = [asyncio.create_task(analyse(two, PAGE)) for _ in pids]
    await wait_until(lambda: sorted(two.busy_pids) == sorted(pids), what="both workers busy")
    await two.close()
    async with asyncio.timeout(HANG_GUARD_S):
        assert await asyncio.gather(*pages) == ["rejected: the bot is shutting down"] * 2
    assert all(gone(pid) for pid in pids)  # close() reaped them
    assert await analyse(two, PAGE) == "rejected: the bot is shutting down"


async def test_a_worker_holds_no_secret_from_the_environment(
    pool: PagePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "MTIzNDU2Nzg5.secret-token")
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2")
    assert await analyse(pool, PAGE) == "Fine"
    (pid,) = pool.pids
    environ = environ_of(pid)
    assert b"secret-token" not in environ and b"hunter2" not in environ
    assert b"DISCORD_TOKEN" not in environ
