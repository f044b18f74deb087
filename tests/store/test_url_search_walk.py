"""URL search walks the FTS matches newest first and stops early; the order must stay exact.

The store's search for a URL substring no longer collects every match (see
`ResultIndex._search_url`): it walks matches by row id and stops when `workflow_blocks` proves no
row below can be newer. These tests build indexes where that shortcut could go wrong (rows
indexed late with old times, equal times, pages across blocks of 1,024 ids, offsets, an index
from schema version 1 without the blocks table) and compare every page with a brute-force answer.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from notifier.config import StorageSettings
from notifier.records import WorkflowRecord, WorkflowStatus
from notifier.store import ResultQuery, ResultStore
from notifier.store.query import MAX_PAGE_SIZE
from notifier.store.sqlite.index import ResultIndex
from notifier.store.sqlite.schema import SCHEMA_VERSION
from notifier.store.sqlite.url_terms import TrigramCounts, read_trigram_counts, trigram_query

from .support import START_S, make_record

SECTIONS = ("news", "sport", "blog", "shop", "docs")


def _rows(
    count: int, seed: int, *, first: int = 0, age_of: int | None = None
) -> list[WorkflowRecord]:
    """Rows in creation order (oldest first), as the bot indexes them; `age_of` shifts them into
    the past, for rows indexed late (reconciliation, imports)."""
    rng = random.Random(seed)
    rows = []
    for i in range(first, first + count):
        created = START_S - (age_of if age_of is not None else 0) + i * 3.0
        rows.append(
            make_record(
                workflow_id=f"{seed:08x}{i:024x}",
                user_id=rng.randint(1, 5),
                url=f"https://site{rng.randint(0, 30)}.example/{rng.choice(SECTIONS)}/{i}",
                created_at=created,
            )
        )
    return rows


def _expected(rows: list[WorkflowRecord], needle: str, user_id: int | None) -> list[str]:
    order = {r.workflow_id: n for n, r in enumerate(rows)}  # insertion order = id order
    hits = [
        r
        for r in rows
        if needle.lower() in r.url.lower() and (user_id is None or r.user_id == user_id)
    ]
    hits.sort(key=lambda r: (r.created_at, order[r.workflow_id]), reverse=True)
    return [r.workflow_id for r in hits]


async def _index(root: Path, batches: list[list[WorkflowRecord]]) -> None:
    store = await ResultStore.open(StorageSettings(path=root), maintain=False)
    await store.close()
    index = await ResultIndex.open(root / "index.sqlite3")
    try:
        for batch in batches:
            await index.insert_many(batch)
    finally:
        await index.close()


async def _all_pages(store: ResultStore, needle: str, user_id: int | None, size: int) -> list[str]:
    seen: list[str] = []
    offset = 0
    while True:
        page = await store.search(
            ResultQuery(url_contains=needle, user_id=user_id, limit=size, offset=offset)
        )
        seen += [r.workflow_id for r in page]
        if len(page) < size:
            return seen
        offset += size


CASES = [
    pytest.param("/news/", None, 25, id="broad"),
    pytest.param("site7.example", None, 25, id="selective"),
    pytest.param("/shop/", 3, 10, id="with-user"),
    pytest.param("/blog/", None, MAX_PAGE_SIZE, id="big-pages"),
    pytest.param("nothing-like-this", None, 25, id="no-match"),
]


@pytest.mark.parametrize(("needle", "user_id", "size"), CASES)
async def test_rows_indexed_late_with_old_times_still_come_in_time_order(
    tmp_path: Path, needle: str, user_id: int | None, size: int
) -> None:
    # 3,000 rows in order, then 1,500 that are older than all of them (a rebuilt index), then
    # 1,000 newer ones: the walk meets old rows in the middle of the id range.
    rows = _rows(3_000, 1, first=2_000)
    rows += _rows(1_500, 2, age_of=100_000)
    rows += _rows(1_000, 3, first=6_000)
    await _index(tmp_path, [rows[:3_000], rows[3_000:4_500], rows[4_500:]])
    store = await ResultStore.open(StorageSettings(path=tmp_path), maintain=False)
    try:
        seen = await _all_pages(store, needle, user_id, size)
        total = await store.count(ResultQuery(url_contains=needle, user_id=user_id))
    finally:
        await store.close()

    assert seen == _expected(rows, needle, user_id)
    assert total == len(seen)


async def test_equal_creation_times_keep_the_newest_id_first_across_pages(tmp_path: Path) -> None:
    rows = _rows(2_500, 4)
    for n, row in enumerate(rows):
        row.created_at = START_S + (n // 700)  # runs of 700 rows share one time
    await _index(tmp_path, [rows])
    store = await ResultStore.open(StorageSettings(path=tmp_path), maintain=False)
    try:
        seen = await _all_pages(store, ".example/", None, 25)
    finally:
        await store.close()

    assert seen == _expected(rows, ".example/", None)
    assert len(seen) == 2_500


async def test_an_index_from_schema_version_1_is_upgraded_and_searched_right(
    tmp_path: Path,
) -> None:
    rows = _rows(1_200, 5, age_of=50_000) + _rows(1_200, 6)
    await _index(tmp_path, [rows[1_200:], rows[:1_200]])  # the old rows got the higher ids
    db = sqlite3.connect(tmp_path / "index.sqlite3")
    try:  # what version 1 had: no blocks table, no triggers for it
        db.executescript(
            "DROP TRIGGER workflow_blocks_insert; DROP TRIGGER workflow_blocks_update;"
            "DROP TABLE workflow_blocks; PRAGMA user_version = 1;"
        )
    finally:
        db.close()

    store = await ResultStore.open(StorageSettings(path=tmp_path), maintain=False)
    try:
        seen = await _all_pages(store, "/docs/", None, 25)
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "index.sqlite3")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()

    order = rows[1_200:] + rows[:1_200]
    assert seen == _expected(order, "/docs/", None)
    assert version == SCHEMA_VERSION


_V2_URL_TRIGGER = """
CREATE TRIGGER workflow_urls_update AFTER UPDATE OF url ON workflows BEGIN
    INSERT INTO workflow_urls (workflow_urls, rowid, url) VALUES ('delete', old.id, old.url);
    INSERT INTO workflow_urls (rowid, url) VALUES (new.id, new.url);
END;
"""


async def test_an_index_from_schema_version_2_is_upgraded_and_a_changed_url_is_found(
    tmp_path: Path,
) -> None:
    # Version 3 only re-indexes a URL that changed (version 2 rewrote every trigram of it at
    # every finish); a row re-indexed with a different URL must still be found by the new one.
    rows = _rows(50, 8)
    await _index(tmp_path, [rows])
    db = sqlite3.connect(tmp_path / "index.sqlite3")
    try:
        db.executescript(
            f"DROP TRIGGER workflow_urls_update; {_V2_URL_TRIGGER} PRAGMA user_version = 2;"
        )
    finally:
        db.close()

    index = await ResultIndex.open(tmp_path / "index.sqlite3")
    try:
        moved, kept = rows[10], rows[11]
        old_url = moved.url
        moved.options["url"] = "https://moved.example/new-home"
        for row in (moved, kept):
            row.status, row.finished_at = WorkflowStatus.COMPLETED, START_S + 99
            await index.upsert_finished(row)
        found_new = await index.search(ResultQuery(url_contains="moved.example/new"))
        found_old = await index.search(ResultQuery(url_contains=old_url.split("//")[1]))
        found_kept = await index.search(ResultQuery(url_contains=kept.url.split("//")[1]))
    finally:
        await index.close()
    db = sqlite3.connect(tmp_path / "index.sqlite3")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        [trigger] = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'workflow_urls_update'"
        ).fetchone()
    finally:
        db.close()

    assert [r.workflow_id for r in found_new] == [moved.workflow_id]
    assert moved.workflow_id not in [r.workflow_id for r in found_old]
    assert [r.workflow_id for r in found_kept] == [kept.workflow_id]
    assert version == SCHEMA_VERSION >= 3
    assert "WHEN old.url IS NOT new.url" in trigger


@pytest.mark.parametrize("counts_say", ["right", "backwards", "nothing"])
async def test_candidates_by_rare_trigrams_hold_every_match_whatever_the_counts_say(
    tmp_path: Path, counts_say: str
) -> None:
    rows = _rows(3_000, 7)
    rows[5].options["url"] = 'https://WEIRD.example/%_"quoted"/Mixed-Case'
    rows[6].options["url"] = 'https://weird.example/%_"quoted"/mixed-case?x=1'
    await _index(tmp_path, [rows])
    path = tmp_path / "index.sqlite3"
    counts = read_trigram_counts(path)
    if counts_say == "backwards":  # the commonest trigrams look rarest
        top = max(counts.docs.values())
        counts = TrigramCounts({t: top - n for t, n in counts.docs.items()}, counts.read_at)
    elif counts_say == "nothing":  # not read yet
        counts = TrigramCounts()
    needles = ["site1", "/news/", "ws/1", 'WEIRD.example/%_"', "mixed-case", ".exam", "zzz"]
    db = sqlite3.connect(path)
    try:
        for needle in needles:
            candidates = {
                row[0]
                for row in db.execute(
                    "SELECT w.workflow_id FROM workflow_urls JOIN workflows w ON w.id = "
                    "workflow_urls.rowid WHERE workflow_urls MATCH ?",
                    (trigram_query(needle, counts),),
                )
            }
            holding = {r.workflow_id for r in rows if needle.lower() in r.url.lower()}
            assert holding <= candidates, needle
            assert bool(holding) == (needle != "zzz"), needle  # the needles do find rows
    finally:
        db.close()
