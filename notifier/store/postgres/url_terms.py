"""Which trigrams of a URL needle PostgreSQL's trigram index should look up: the rarest ones.

``url ILIKE '%site2092.example%'`` makes the ``pg_trgm`` GIN index intersect the posting lists of
every trigram pg_trgm extracts from the needle, and in a million URLs most of them (``sit``,
``exa``, ``xam``, ``amp``...) are in every row: about 35 ms in the bitmap index scan however few
rows match (BENCHMARKS.md, section 9). The rows that hold the needle also hold its rarest
trigrams, and asking the index for rows holding those only walks short lists. pg_trgm extracts
from ``'%209%'`` exactly the trigram ``209`` (a word of three characters with wildcards on both
sides gets no padding), so the lookup is ``url ILIKE '%209%' AND url ILIKE '%092%'``; each
candidate is then tested with the whole needle in an expression the index cannot serve
(``(url || '') ILIKE ...``), so the answer is exact whatever the lookup let through. This is the
SQLite index's method (`sqlite.url_terms`), in PostgreSQL's words.

How rare a trigram is comes from a sample of rows (``TABLESAMPLE SYSTEM``, about
`SAMPLE_ROWS`), split by pg_trgm's own ``show_trgm``: read in the background at the first URL
search, refreshed after `REFRESH_S`. The counts only choose which lookups to make, never what
matches: stale or missing counts cost speed, not correctness. The plain pattern stays for a
small table (it is fast there), for a needle with no trigram of ASCII letters and digits, and for
a needle whose rarest trigram is common (``/news/``: a fifth of all rows): the planner then
walks the rows newest first and stops at the page's limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "REFRESH_S",
    "SAMPLE_ROWS",
    "SMALL_TABLE_ROWS",
    "Lookup",
    "UrlTrigramCounts",
    "rare_trigrams",
    "sample_percent",
]

REFRESH_S: Final = 600.0  # how old the counts may get before a search asks for new ones
SAMPLE_ROWS: Final = 20_000  # rows the sample aims at: shares to within a fraction of a percent
SMALL_TABLE_ROWS: Final = 50_000  # below this the plain pattern is fast enough: no sample
TERMS: Final = 3  # trigrams per lookup: enough to be selective, few lists to walk
# A needle whose rarest trigram is in more than this share of the sampled rows keeps the plain
# pattern (see the module docstring); trigrams over `LOOKUP_SHARE` are never looked up.
COMMON_SHARE: Final = 0.05
LOOKUP_SHARE: Final = 0.10

# Two kinds of trigram, each with the piece of the needle whose pattern extracts exactly it:
# three letters or digits (``209`` from ``%209%``), and a word's end, pg_trgm's ``28 `` (the
# last two of a word and a blank), from ``%28.%``: the word's last two characters and the
# character after them that ends it. A word's start (``  s``, `` si``) comes with a second,
# common trigram in any pattern, so it is not offered.
_INNER: Final = re.compile(r"(?=([a-z0-9]{3}))")
_WORD_END: Final = re.compile(r"(?=([a-z0-9]{2})([^a-z0-9]))")


@dataclass(frozen=True, slots=True)
class Lookup:
    """One trigram to look up: `trigram` as `show_trgm` spells it, `piece` the needle's text
    whose ``'%piece%'`` pattern makes pg_trgm extract that trigram alone."""

    trigram: str
    piece: str


@dataclass(frozen=True, slots=True)
class UrlTrigramCounts:
    """Sampled rows per trigram, as of `read_at` (monotonic seconds)."""

    rows: Mapping[str, int] = field(default_factory=dict)
    sampled: int = 0  # rows in the sample; 0: the table was small, no sample taken
    read_at: float = float("-inf")

    def stale(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self.read_at > REFRESH_S


def sample_percent(table_rows: float) -> float | None:
    """The ``TABLESAMPLE SYSTEM`` percentage for about `SAMPLE_ROWS` rows of a table of
    `table_rows` (the planner's estimate), None for a table too small to need counts."""
    if table_rows < SMALL_TABLE_ROWS:
        return None
    return min(100.0, 100.0 * SAMPLE_ROWS / table_rows)


def _candidates(needle: str) -> list[Lookup]:
    folded = needle.lower()
    found = [Lookup(m.group(1), m.group(1)) for m in _INNER.finditer(folded)]
    for m in _WORD_END.finditer(folded):
        if m.group(2).isascii():
            found.append(Lookup(m.group(1) + " ", m.group(1) + m.group(2)))
    return list({c.trigram: c for c in found}.values())


def rare_trigrams(needle: str, counts: UrlTrigramCounts) -> list[Lookup]:
    """What the index should look up for `needle` (rarest first), or [] for the plain pattern.
    Only trigrams of ASCII letters and digits (what pg_trgm extracts whatever the database's
    locale); a trigram the sample never met is the rarest of all (new since the sample, or in
    no row)."""
    if counts.sampled <= 0:
        return []
    ranked = sorted(_candidates(needle), key=lambda c: counts.rows.get(c.trigram, 0))
    if not ranked or counts.rows.get(ranked[0].trigram, 0) > COMMON_SHARE * counts.sampled:
        return []
    limit = LOOKUP_SHARE * counts.sampled
    return [c for c in ranked[:TERMS] if counts.rows.get(c.trigram, 0) <= limit]
