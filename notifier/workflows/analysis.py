"""Pure analysis of one HTML document: title, headings, links, visible words, keywords.

No I/O, so it is tested on strings and can run in a worker thread (`asyncio.to_thread`) where a
multi-megabyte page does not stall the bot's event loop. Built on `html.parser`, which never
gives up on broken markup, so any page yields some answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser

from yarl import URL

__all__ = [
    "READING_WORDS_PER_MIN",
    "STOPWORDS",
    "Heading",
    "PageAnalysis",
    "analyse_html",
    "keyword_counts",
    "normalise_link",
    "reading_time_min",
    "same_origin",
    "top_keywords",
]

READING_WORDS_PER_MIN = 200
MAX_HEADINGS_PER_PAGE = 50
MAX_HEADING_CHARS = 200
MAX_TITLE_CHARS = 300
MAX_DESCRIPTION_CHARS = 300

# Elements whose text a reader never sees as prose.
_HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object"})
# Elements that do not break a word: "<b>wo</b>rd" is one word, "<p>a</p><p>b</p>" is two.
_INLINE = frozenset(
    {
        "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd",
        "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var",
        "wbr",
    }
)  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3}
_WORD = re.compile(r"\w+(?:['’\-]\w+)*")
_SPACE = re.compile(r"\s+")
_DEFAULT_PORTS = {"http": 80, "https": 443}

_STOPWORD_TEXT = """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each even ever every few for from further get gets got had
    hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him
    himself his how how's however i i'd i'll i'm i've if in into is isn't it it's its itself
    just let's like made make many may me might more most much must mustn't my myself new no nor
    not now of off often on once one only or other ought our ours ourselves out over own per
    really said same say says see shan't she she'd she'll she's should shouldn't since so some
    still such than that that's the their theirs them themselves then there there's these they
    they'd they'll they're they've this those though through thus to too two under until up upon
    us use used using very via was wasn't way we we'd we'll we're we've well were weren't what
    what's when when's where where's whether which while who who's whom why why's will with
    within without won't would wouldn't yet you you'd you'll you're you've your yours yourself
    yourselves
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class PageAnalysis:
    """What one page says. `links` are absolute http(s) URLs without fragments, de-duplicated,
    in document order; `words` are the visible words in order (keywords and counts derive from
    them)."""

    title: str
    description: str
    headings: tuple[Heading, ...]
    links: tuple[URL, ...]
    words: tuple[str, ...] = field(repr=False)

    @property
    def word_count(self) -> int:
        return len(self.words)


def _collapse(text: str, limit: int) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden: list[str] = []
        self.text: list[str] = []
        self.title_parts: list[str] | None = None
        self.title: str | None = None
        self.description: str | None = None
        self.base_href: str | None = None
        self.hrefs: list[str] = []
        self.headings: list[Heading] = []
        self.heading_level: int | None = None
        self.heading_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE:
            self.text.append(" ")
        if self.hidden:
            if tag in _HIDDEN:
                self.hidden.append(tag)
            return
        if tag in _HIDDEN:
            self.hidden.append(tag)
            return
        if tag == "body" and self.title_parts is not None:
            self.handle_endtag("title")  # an unclosed <title> ends where the body begins
        values = {name: value for name, value in attrs if value is not None}
        if tag in ("a", "area") and "href" in values:
            self.hrefs.append(values["href"])
        elif tag == "title" and self.title is None:
            self.title_parts = []
        elif tag == "base" and self.base_href is None and "href" in values:
            self.base_href = values["href"]
        elif (
            tag == "meta"
            and self.description is None
            and values.get("name", "").lower() == "description"
        ):
            self.description = values.get("content", "")
        elif tag in _HEADINGS and self.heading_level is None:
            self.heading_level = _HEADINGS[tag]
            self.heading_parts = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <svg/>, <title/> or <h1/> open nothing here: only record what the tag itself carries
        # (a link, a base, a meta description), or the rest of the page would vanish into them.
        if tag in _HIDDEN or tag == "title" or tag in _HEADINGS:
            self.text.append(" ")
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in _INLINE:
            self.text.append(" ")
        if self.hidden:
            if tag in self.hidden:
                while self.hidden.pop() != tag:
                    pass
            return
        if tag == "title" and self.title_parts is not None:
            self.title = "".join(self.title_parts)
            self.title_parts = None
        elif tag in _HEADINGS and self.heading_level == _HEADINGS[tag]:
            text = _collapse("".join(self.heading_parts), MAX_HEADING_CHARS)
            if text and len(self.headings) < MAX_HEADINGS_PER_PAGE:
                self.headings.append(Heading(self.heading_level, text))
            self.heading_level = None

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.title_parts is not None:
            self.title_parts.append(data)
            return
        self.text.append(data)
        if self.heading_level is not None:
            self.heading_parts.append(data)

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # _markupbase raises AssertionError on "<![junk" instead of recovering like a browser,
        # which treats it as a bogus comment. Do the same.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            end = self.rawdata.find(">", i + 3)
            return -1 if end < 0 else end + 1


def normalise_link(href: str, base: URL) -> URL | None:
    """`href` resolved against `base` as an absolute http(s) URL without fragment, or None for
    anything that is not a web page link (mailto:, javascript:, malformed)."""
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    try:
        url = base.join(URL(href))
        if url.scheme not in ("http", "https") or not url.raw_host:
            return None
        if url.explicit_port is not None and url.explicit_port == _DEFAULT_PORTS[url.scheme]:
            url = url.with_port(None)  # yarl compares http://h:80/ unequal to http://h/
        return url.with_fragment(None)
    except (ValueError, TypeError):
        return None


def same_origin(a: URL, b: URL) -> bool:
    """Same scheme, host and port (default ports made explicit): the crawl's notion of "site"."""
    return (a.scheme, a.raw_host, a.port) == (b.scheme, b.raw_host, b.port)


def analyse_html(html: str, url: str | URL) -> PageAnalysis:
    """Analyse one HTML document fetched from `url` (the final URL, after redirects)."""
    parser = _Extractor()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError:
        pass  # keep what was parsed so far; html.parser has a few such dead ends
    page_url = URL(url) if isinstance(url, str) else url
    base = page_url
    if parser.base_href is not None:
        candidate = normalise_link(parser.base_href, page_url)
        if candidate is not None:
            base = candidate
    links: dict[URL, None] = {}
    for href in parser.hrefs:
        link = normalise_link(href, base)
        if link is not None:
            links.setdefault(link, None)
    title = parser.title if parser.title is not None else "".join(parser.title_parts or ())
    return PageAnalysis(
        title=_collapse(title, MAX_TITLE_CHARS),
        description=_collapse(parser.description or "", MAX_DESCRIPTION_CHARS),
        headings=tuple(parser.headings),
        links=tuple(links),
        words=tuple(_WORD.findall("".join(parser.text))),
    )


def keyword_counts(words: Iterable[str]) -> Counter[str]:
    """Candidate keywords: lowercased words of 3+ characters with a letter, minus stopwords and a
    trailing possessive 's."""
    counts: Counter[str] = Counter()
    for word in words:
        lowered = word.lower().replace("’", "'")
        lowered = lowered.removesuffix("'s")
        if (
            len(lowered) >= 3
            and lowered not in STOPWORDS
            and any(ch.isalpha() for ch in lowered)
            and not lowered.startswith("_")
        ):
            counts[lowered] += 1
    return counts


def top_keywords(counts: Counter[str], limit: int = 10) -> list[tuple[str, int]]:
    """The `limit` most frequent keywords; ties keep first-seen order, so results are stable."""
    return counts.most_common(limit)


def reading_time_min(word_count: int) -> float:
    """Minutes to read `word_count` words at READING_WORDS_PER_MIN, rounded up to 0.1 min."""
    return math.ceil(word_count * 10 / READING_WORDS_PER_MIN) / 10
