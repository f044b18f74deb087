"""What a page worker sends back for one page, and the framing both ends of its socket use.

A worker (`pageworker`, a child process) turns a page's bytes into a `PageSummary`: the little
that a crawl keeps of a page (title, description, headings, word count, its most frequent
keywords, its links already sorted into "elsewhere", "on the site" and "on the site and worth
crawling"), bounded by the caps in `analysis`. The summary crosses the process boundary as JSON,
never pickle: the worker has just parsed a stranger's page, and the bot must not execute
whatever a subverted worker might send. `PageSummary.from_wire` checks every field and every
cap, so the bot's loop only ever holds a few hundred kilobytes per page however large or
hostile the page was, and takes well under a millisecond to read it.

Frames: a request is `>II` (header length, body length), a JSON header, then the body bytes; a
reply is `>I` (length) and a JSON object. A worker says it is ready with one byte, READY.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from yarl import URL

from .analysis import (
    MAX_DESCRIPTION_CHARS,
    MAX_HEADING_CHARS,
    MAX_HEADINGS_PER_PAGE,
    MAX_KEYWORD_CHARS,
    MAX_KEYWORDS_PER_PAGE,
    MAX_LINK_CHARS,
    MAX_LINKS_PER_PAGE,
    MAX_TITLE_CHARS,
    Heading,
    PageAnalysis,
    same_origin,
)

__all__ = [
    "CONTENT_ENCODINGS",
    "MAX_REPLY_BYTES",
    "READY",
    "REPLY_HEAD",
    "REQUEST_HEAD",
    "LinkKind",
    "PageSummary",
    "looks_like_page",
    "summarise",
]

READY: Final = b"\x01"
#: Content-Encodings a worker inflates (lowercase; "" is none). The fetch asks for gzip and
#: deflate only and refuses a page served otherwise.
CONTENT_ENCODINGS: Final = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
REQUEST_HEAD: Final = struct.Struct(">II")
REPLY_HEAD: Final = struct.Struct(">I")
#: A reply longer than this is a broken worker: the caps make a summary at most about 600 KB.
MAX_REPLY_BYTES: Final = 2 * 1024 * 1024

# Links to these are never worth a page of the crawl budget: they are not HTML.
_NOT_PAGE_SUFFIXES = (
    ".7z .avi .css .csv .dmg .doc .docx .exe .gif .gz .ico .iso .jpeg .jpg .js .json .mov .mp3"
    " .mp4 .ogg .pdf .png .ppt .pptx .rar .rss .svg .tar .tgz .ttf .txt .wav .webm .webp .woff"
    " .woff2 .xls .xlsx .xml .zip"
)
_NOT_PAGES: Final = frozenset(_NOT_PAGE_SUFFIXES.split())


class LinkKind(enum.IntEnum):
    """Where a link points, seen from the crawl's site."""

    ELSEWHERE = 0
    SITE = 1  # on the site, but not a page (a PDF, an image)
    SITE_PAGE = 2  # on the site and worth a page of the crawl budget


def looks_like_page(url: URL) -> bool:
    """False for a link whose file name says it is not HTML (`.pdf`, `.png`, ...)."""
    name = url.path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    return dot < 0 or name[dot:] not in _NOT_PAGES


@dataclass(frozen=True, slots=True)
class PageSummary:
    """What a crawl keeps of one analysed page (see `analysis.PageAnalysis` for the fields);
    `links` are (URL as text, where it points), at most MAX_LINKS_PER_PAGE."""

    title: str
    description: str
    headings: tuple[Heading, ...]
    word_count: int
    keywords: tuple[tuple[str, int], ...]
    links: tuple[tuple[str, LinkKind], ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "headings": [[h.level, h.text] for h in self.headings],
            "word_count": self.word_count,
            "keywords": [[word, count] for word, count in self.keywords],
            "links": [[link, int(kind)] for link, kind in self.links],
        }

    @classmethod
    def from_wire(cls, data: object) -> PageSummary:
        """The summary in a worker's reply; ValueError naming the field for anything that is
        not exactly what `to_wire` makes within the caps."""
        if not isinstance(data, Mapping):
            raise ValueError("page: not an object")
        return cls(
            title=_text(data.get("title"), "title", MAX_TITLE_CHARS),
            description=_text(data.get("description"), "description", MAX_DESCRIPTION_CHARS),
            headings=tuple(
                Heading(_level(item), _text(item[1], "headings", MAX_HEADING_CHARS))
                for item in _pairs(data.get("headings"), "headings", MAX_HEADINGS_PER_PAGE)
            ),
            word_count=_count(data.get("word_count"), "word_count"),
            keywords=tuple(
                (_text(item[0], "keywords", MAX_KEYWORD_CHARS), _count(item[1], "keywords"))
                for item in _pairs(data.get("keywords"), "keywords", MAX_KEYWORDS_PER_PAGE)
            ),
            links=tuple(
                (_text(item[0], "links", MAX_LINK_CHARS), _kind(item[1]))
                for item in _pairs(data.get("links"), "links", MAX_LINKS_PER_PAGE)
            ),
        )

    def encode(self) -> bytes:
        return orjson.dumps({"page": self.to_wire()})


def summarise(analysis: PageAnalysis, site: URL) -> PageSummary:
    """Fold one page's analysis into what the crawl keeps, its links sorted relative to `site`."""
    links: list[tuple[str, LinkKind]] = []
    for link in analysis.links:
        if not same_origin(link, site):
            kind = LinkKind.ELSEWHERE
        elif looks_like_page(link):
            kind = LinkKind.SITE_PAGE
        else:
            kind = LinkKind.SITE
        links.append((str(link), kind))
    return PageSummary(
        title=analysis.title,
        description=analysis.description,
        headings=analysis.headings,
        word_count=analysis.word_count,
        keywords=analysis.keywords,
        links=tuple(links),
    )


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{name}: not text of at most {limit} characters")
    return value


def _count(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: not a count")
    return value


def _level(item: list[object]) -> int:
    level = item[0]
    if isinstance(level, bool) or not isinstance(level, int) or level not in (1, 2, 3):
        raise ValueError("headings: level not 1, 2 or 3")
    return level


def _kind(value: object) -> LinkKind:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("links: kind not a number")
    try:
        return LinkKind(value)
    except ValueError:
        raise ValueError("links: unknown kind") from None


def _pairs(value: object, name: str, limit: int) -> list[list[object]]:
    if not isinstance(value, list) or len(value) > limit:
        raise ValueError(f"{name}: not a list of at most {limit}")
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError(f"{name}: not pairs")
    return value
