"""PostgreSQL's URL search through the rarest trigrams (`store.postgres.url_terms`) is exact.

On a table big enough for the trigram sample (60,000 rows), selective needles take the lookup of
their rarest trigrams and broad ones the plain pattern; every answer, both ways, is the one a
plain case-insensitive substring test over the same rows gives: the same count, the same newest
page. LIKE's own characters (``%``, ``_``, ``\\``) in a needle match themselves.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Final

import pytest

from notifier.config import StorageSettings
from notifier.records import WorkflowRecord
from notifier.store import ResultQuery
from notifier.store.postgres import PostgresStore
from notifier.store.postgres.url_terms import SMALL_TABLE_ROWS, rare_trigrams

from .support import make_record

ROWS: Final = SMALL_TABLE_ROWS + 10_000
SPECIAL: Final = (
    "https://Weird.EXAMPLE/50%_off\\path/site28.example",
    "https://shop.example/50x_off/a",
    "https://shop.example/item_28.example/b",
)
SELECTIVE: Final = (
    "site28.example",
    "SITE1234.Example",
    "site7.example.com/docs",
    "title-4242",
    "site99999.example",  # matches nothing
)
PLAIN: Final = ("/news/", "example", "%", "ab")  # common trigrams, or none: the plain pattern
TRICKY: Final = ("50%_off", "_off", "\\path", "28.ex", "e.com/")


def _rows() -> list[WorkflowRecord]:
    rng = random.Random(11)
    sections = ("news", "blog", "docs", "shop")
    urls = [
        f"https://site{rng.randrange(3000)}.example.com/{rng.choice(sections)}/"
        f"title-{rng.randrange(10**6)}"
        for _ in range(ROWS - len(SPECIAL))
    ]
    urls[1000:1000] = SPECIAL
    return [
        make_record(user_id=1 + i % 50, url=url, created_at=1_000_000.0 + i)
        for i, url in enumerate(urls)
    ]


@pytest.fixture(scope="module")
def rows() -> list[WorkflowRecord]:
    return _rows()


@pytest.fixture
async def store(postgres_dsn: str, rows: list[WorkflowRecord]) -> AsyncIterator[PostgresStore]:
    settings = StorageSettings.model_validate({"backend": "postgres", "postgres_dsn": postgres_dsn})
    opened = await PostgresStore.open(settings)
    try:
        await opened.insert_many(rows)
        await opened.url_search_ready()
        yield opened
    finally:
        await opened.close()


def _expected(rows: list[WorkflowRecord], needle: str, user_id: int | None) -> list[str]:
    found = [
        r
        for r in rows
        if needle.lower() in r.url.lower() and (user_id is None or r.user_id == user_id)
    ]
    return [r.workflow_id for r in sorted(found, key=lambda r: r.created_at, reverse=True)]


async def test_url_search_through_the_rarest_trigrams_gives_the_plain_answer(
    store: PostgresStore, rows: list[WorkflowRecord]
) -> None:
    # The needles below do take the two ways (url_search_ready read the sample; the test
    # reads which way each one takes from the index itself).
    counts = store._index._url_counts
    assert counts.sampled > 0
    assert all(rare_trigrams(needle, counts) for needle in SELECTIVE)
    assert not any(rare_trigrams(needle, counts) for needle in PLAIN)

    for needle in (*SELECTIVE, *PLAIN, *TRICKY):
        for user_id in (None, 7):
            expected = _expected(rows, needle, user_id)
            query = ResultQuery(url_contains=needle, user_id=user_id, limit=25)
            found = await store.search(query)
            assert [r.workflow_id for r in found] == expected[:25], (needle, user_id)
            assert await store.count(query) == len(expected), (needle, user_id)

    # LIKE's characters in a needle match only themselves, whichever way it takes.
    found = await store.search(ResultQuery(url_contains="50%_OFF\\PATH/site28.", limit=25))
    assert [r.url for r in found] == [SPECIAL[0]]
    assert await store.search(ResultQuery(url_contains="_28.example/", limit=25)) != []
    assert [r.url for r in await store.search(ResultQuery(url_contains="m_28.e", limit=25))] == [
        SPECIAL[2]
    ]
