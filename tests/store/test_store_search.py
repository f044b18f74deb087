"""Search over a store of 10,000 workflows returns exactly the right rows, newest first, on every
backend (tests/store/conftest.py): SQLite's FTS5 trigram walk and PostgreSQL's pg_trgm index."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from notifier.config import StorageSettings
from notifier.records import WorkflowRecord, WorkflowStatus
from notifier.store import ResultQuery, ResultStore, Store
from notifier.store.query import MAX_PAGE_SIZE
from notifier.store.sqlite.index import ResultIndex

from .support import START_S, make_record

ROWS = 10_000

URL_SHAPES = (
    "https://site{n}.example/path/{i}",
    "https://shop.example/100%_off/{i}",
    "https://a_b.example/{i}",
    "https://SALE.example/50%/{i}",
    "https://plain.example/x{i}",
    'https://quote.example/say-"hi"/{i}',
)


def _records() -> list[WorkflowRecord]:
    rng = random.Random(20260801)
    ages = list(range(ROWS))
    rng.shuffle(ages)  # insertion order is not time order
    records = []
    for i, age in enumerate(ages):
        status = rng.choice(list(WorkflowStatus))
        created = START_S - age * 37.0
        record = make_record(
            workflow_id=f"{i:032x}",
            user_id=rng.randint(1, 40),
            command=rng.choice(("autointel", "autointel", "other")),
            url=rng.choice(URL_SHAPES).format(n=rng.randint(1, 9), i=i),
            created_at=created,
            status=status,
        )
        if status is not WorkflowStatus.RUNNING:
            record.finished_at = created + 30
        records.append(record)
    return records


RECORDS = _records()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index holding RECORDS, built once; each test searches its own copy."""
    root = tmp_path_factory.mktemp("search-template")

    async def build() -> None:
        store = await ResultStore.open(StorageSettings(path=root), maintain=False)
        await store.close()
        index = await ResultIndex.open(root / "index.sqlite3")
        try:
            await index.insert_many(RECORDS)
        finally:
            await index.close()

    asyncio.run(build())
    return root


@pytest.fixture
def big_store_source(backend: str, request: pytest.FixtureRequest) -> Path | str:
    """What `big_store` starts from: the SQLite `template` folder, or an empty PostgreSQL
    database's DSN (resolved here, outside the event loop: `template` runs one of its own)."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("template")
        return template
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture
async def big_store(big_store_source: Path | str, tmp_path: Path) -> AsyncIterator[Store]:
    """RECORDS in a store of the backend under test: for SQLite a copy of `template`, for
    PostgreSQL a database of the test's own, loaded with one COPY."""
    if isinstance(big_store_source, Path):
        template = big_store_source
        root = tmp_path / "data"
        shutil.copytree(template, root)
        store = await ResultStore.open(StorageSettings(path=root), maintain=False)
        yield store
        await store.close()
        return
    from notifier.store.postgres import PostgresStore

    settings = StorageSettings(backend="postgres", postgres_dsn=big_store_source)
    loaded = await PostgresStore.open(settings)
    try:
        await loaded.insert_many(RECORDS)
        await loaded.url_search_ready()
    finally:
        await loaded.close()
    store = await PostgresStore.open(settings, maintain=False)  # as the CLI opens it
    yield store
    await store.close()


def _contains(needle: str) -> Callable[[WorkflowRecord], bool]:
    return lambda r: needle.lower() in r.url.lower()


T0 = START_S - 5_000 * 37.0
T1 = START_S - 2_000 * 37.0

CASES: list[Any] = [
    pytest.param({"user_id": 7}, lambda r: r.user_id == 7, id="user"),
    pytest.param({"url_contains": "100%_off"}, _contains("100%_off"), id="url-percent-underscore"),
    pytest.param({"url_contains": "_"}, _contains("_"), id="url-underscore-alone"),
    pytest.param({"url_contains": "%"}, _contains("%"), id="url-percent-alone"),
    pytest.param({"url_contains": "%/"}, _contains("%/"), id="url-two-chars"),
    pytest.param({"url_contains": "a_b."}, _contains("a_b."), id="url-underscore-is-literal"),
    pytest.param({"url_contains": "sale.EXAMPLE"}, _contains("sale.example"), id="url-any-case"),
    pytest.param({"url_contains": '"hi"'}, _contains('"hi"'), id="url-quotes"),
    pytest.param({"url_contains": "example/x1"}, _contains("example/x1"), id="url-shared-prefix"),
    pytest.param(
        {"status": WorkflowStatus.FAILED}, lambda r: r.status is WorkflowStatus.FAILED, id="status"
    ),
    pytest.param({"since": T0, "until": T1}, lambda r: T0 <= r.created_at < T1, id="time-range"),
    pytest.param({"command": "other"}, lambda r: r.command == "other", id="command"),
    pytest.param(
        {
            "user_id": 3,
            "status": WorkflowStatus.COMPLETED,
            "since": T0,
            "url_contains": ".example/",
        },
        lambda r: (
            r.user_id == 3
            and r.status is WorkflowStatus.COMPLETED
            and r.created_at >= T0
            and ".example/" in r.url
        ),
        id="combined",
    ),
]


@pytest.mark.parametrize(("filters", "matches"), CASES)
async def test_search_returns_exactly_the_matching_rows_newest_first(
    big_store: Store,
    filters: dict[str, Any],
    matches: Callable[[WorkflowRecord], bool],
) -> None:
    expected = sorted((r for r in RECORDS if matches(r)), key=lambda r: r.created_at, reverse=True)
    assert expected, "the case must select something to be meaningful"
    expected_ids = [r.workflow_id for r in expected]

    found = await big_store.search(ResultQuery(**filters, limit=MAX_PAGE_SIZE))

    assert [r.workflow_id for r in found] == expected_ids
    assert await big_store.count(ResultQuery(**filters)) == len(expected)


@pytest.mark.parametrize("needle", ["no-such-thing", "_%_", "\\"])
async def test_a_needle_nobody_has_matches_nothing(big_store: Store, needle: str) -> None:
    assert await big_store.search(ResultQuery(url_contains=needle)) == []
    assert await big_store.count(ResultQuery(url_contains=needle)) == 0


async def test_pages_cover_the_results_once_each(big_store: Store) -> None:
    query = {"user_id": 11}
    total = await big_store.count(ResultQuery(**query))
    seen: list[str] = []
    for offset in range(0, total + 25, 25):
        seen += [r.workflow_id for r in await big_store.search(ResultQuery(**query, offset=offset))]

    expected = sorted(
        (r for r in RECORDS if r.user_id == 11), key=lambda r: r.created_at, reverse=True
    )
    assert seen == [r.workflow_id for r in expected]
    assert total == len(expected)


async def test_rows_come_back_whole(big_store: Store) -> None:
    original = RECORDS[1234]

    assert await big_store.get(original.workflow_id) == original


async def test_autocomplete_on_a_big_store(big_store: Store) -> None:
    user = RECORDS[0].user_id
    prefix = RECORDS[0].workflow_id[:30]
    expected = sorted(
        (r for r in RECORDS if r.user_id == user and r.workflow_id.startswith(prefix)),
        key=lambda r: r.created_at,
        reverse=True,
    )[:25]

    found = await big_store.recent_ids(user, prefix)

    assert [r.workflow_id for r in found] == [r.workflow_id for r in expected]


@pytest.mark.parametrize(
    "bad",
    [{"limit": 0}, {"limit": MAX_PAGE_SIZE + 1}, {"offset": -1}, {"status": "completed"}],
)
def test_a_query_out_of_range_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ResultQuery(**bad)
