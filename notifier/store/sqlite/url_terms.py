"""Which trigrams of a URL needle to ask the FTS index for: the rarest ones.

A quoted FTS5 trigram phrase ("site1234.example") is an exact substring match, but FTS5 evaluates
it by walking the position lists of every trigram in it, and in a million URLs most trigrams
(``sit``, ``.ex``, ``exa``...) are in every row: 25 to 45 ms however few rows match. The rows that
hold the needle also hold its rarest trigrams, and asking FTS for rows with those three (``"234"
AND "123" AND "34."``) touches only short lists: under 1 ms. Those rows are candidates; the
exact test is ``instr(lower(url), lower(needle))`` on each (see `ResultIndex._search_url`).

How rare a trigram is comes from the fts5vocab view of the index (documents per trigram), read in
a worker thread on a connection of its own (2.5 s for a million rows) at the first URL search and
refreshed now and then.
The counts only choose which trigrams to ask for: stale or missing counts cost speed, never
correctness. Only for ASCII needles, where SQLite's ``lower`` and the tokenizer agree on case.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["REFRESH_S", "TrigramCounts", "fts_phrase", "read_trigram_counts", "trigram_query"]

REFRESH_S: Final = 600.0  # how old the counts may get before a search asks for new ones
TERMS: Final = 3  # trigrams per candidate query: enough to be selective, few lists to walk


@dataclass(frozen=True, slots=True)
class TrigramCounts:
    """Documents per trigram, as of `read_at` (monotonic seconds)."""

    docs: Mapping[str, int] = field(default_factory=dict)
    read_at: float = float("-inf")

    def stale(self, now: float) -> bool:
        return now - self.read_at > REFRESH_S


def read_trigram_counts(path: Path) -> TrigramCounts:
    """Blocking: read the counts from the index at `path` (run in a worker thread)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute(
            "CREATE VIRTUAL TABLE temp.url_vocab USING fts5vocab(main, workflow_urls, 'row')"
        )
        docs = {
            str(term): int(count)
            for term, count in conn.execute("SELECT term, doc FROM temp.url_vocab")
        }
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    return TrigramCounts(docs, time.monotonic())


def fts_phrase(text: str) -> str:
    """`text` as a quoted FTS5 string: no character but the doubled quote is special inside."""
    return '"' + text.replace('"', '""') + '"'


def trigram_query(needle: str, counts: TrigramCounts) -> str:
    """An FTS5 query matching every row whose URL contains `needle` (ASCII, >= 3 characters),
    and as few others as the counts allow: its rarest trigrams, ANDed. A trigram the counts do
    not know is taken as the rarest (it is new since they were read, or in no row at all)."""
    folded = needle.lower()
    trigrams = list(dict.fromkeys(folded[i : i + 3] for i in range(len(folded) - 2)))
    rarest = sorted(trigrams, key=lambda t: counts.docs.get(t, 0))[:TERMS]
    return " AND ".join(fts_phrase(t) for t in rarest)
