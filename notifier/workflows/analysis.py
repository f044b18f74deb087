"""Pure analysis of one HTML document: title, headings, links, visible words, keywords.

No I/O and no state: it runs inside a page worker process (`pageworker`), never on the bot's
event loop, and is tested on strings.

Why lxml (libxml2 2.14's HTML parser) and not `html.parser`: a page is written by whoever serves
it, so the parser must take time linear in the page whatever the markup. `html.parser` does not
(an unclosed tag run `"<a " * n`: 12 KB 1.5 s, 48 KB 19.5 s, 2 MiB beyond 20 s; runs of `<!--`,
`<!` or `</` of 2 MiB beyond 20 s too). Parsers measured here on 2 MiB of each hostile input
(CPU seconds, Python 3.12, 2-core EPYC VM; parse plus a walk over every node):

| 2 MiB of           | lxml 6.2 | selectolax 1.0 (lexbor) | resiliparse 2.0 (lexbor) | html.parser |
|--------------------|----------|-------------------------|--------------------------|-------------|
| `<a ` (tag run)    | 0.04     | 0.07                    | 0.06                     | > 20        |
| `<div>` nesting    | 0.02     | > 20                    | 2.1                      | 1.1         |
| `<ul><li>`         | 0.02     | > 20                    | 2.6                      | -           |
| `<a>` / `<a href=x>` run | 0.41 / 0.20 | 0.16 / 0.10     | > 15 / > 15              | -           |
| `<p><b>`, `<table>`, `<button>`, `<h1>` runs | 0.02-0.42 | 0.06-0.27 | > 15          | -           |
| links `<a href=..>x</a>` | 0.12 | 0.07                  | 0.06                     | 0.59        |
| one 2 MiB attribute | 0.03    | 0.01                    | 0.01                     | 0.01        |
| `<!--`, `<!`, `</` runs | 0.01 | 0.01-0.03              | 0.01-0.02                | > 20        |

lexbor's tree builder walks its stack of open elements for every start tag (quadratic on deep
nesting); html5-parser's wheel would not load beside lxml 6. libxml2 stops building the tree at
256 levels (`huge_tree` off): deeper content is dropped, which only hostile pages have.

Still, a parser is not the only cost (walking 700,000 elements is Python work), so the worker
that runs this is limited in CPU time, wall-clock time and memory per page, and is killed when a
crawl is cancelled. Whatever the page, what is kept is bounded: MAX_LINKS_PER_PAGE links,
MAX_KEYWORDS_PER_PAGE keywords, MAX_WORDS_PER_PAGE words, MAX_HEADINGS_PER_PAGE headings; counts
(`word_count`) cover the whole page.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import lxml.etree  # type: ignore[import-untyped]
from yarl import URL

__all__ = [
    "MAX_DESCRIPTION_CHARS",
    "MAX_HEADINGS_PER_PAGE",
    "MAX_HEADING_CHARS",
    "MAX_KEYWORDS_PER_PAGE",
    "MAX_KEYWORD_CHARS",
    "MAX_LINKS_PER_PAGE",
    "MAX_LINK_CHARS",
    "MAX_TITLE_CHARS",
    "MAX_WORDS_PER_PAGE",
    "READING_WORDS_PER_MIN",
    "STOPWORDS",
    "Heading",
    "PageAnalysis",
    "analyse_html",
    "keyword_counts",
    "most_frequent_in_order",
    "normalise_link",
    "reading_time_min",
    "same_origin",
    "top_keywords",
]

READING_WORDS_PER_MIN: Final = 200
MAX_HEADINGS_PER_PAGE: Final = 50
MAX_HEADING_CHARS: Final = 200
MAX_TITLE_CHARS: Final = 300
MAX_DESCRIPTION_CHARS: Final = 300
#: Distinct links kept per page, in document order (a big portal links 300-600; Wikipedia's
#: longest articles about 1,500 with their navigation).
MAX_LINKS_PER_PAGE: Final = 1000
#: Longer hrefs are not followed or counted (the SSRF guard refuses URLs over 2,048 anyway).
MAX_LINK_CHARS: Final = 512
#: Hrefs resolved per page at most (each is a yarl parse): a page of 80,000 hrefs that all
#: resolve to a few URLs stops costing here.
MAX_HREFS_RESOLVED: Final = 10 * MAX_LINKS_PER_PAGE
#: Keywords kept per page: the most frequent, in first-seen order (ties then rank as before).
MAX_KEYWORDS_PER_PAGE: Final = 200
#: A "word" longer than this is not a keyword (it is counted as a word still).
MAX_KEYWORD_CHARS: Final = 64
#: Visible words kept per page, in order (a sample: counts and keywords use every word).
MAX_WORDS_PER_PAGE: Final = 2000

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
_TITLE_OPEN = re.compile(r"<title\b", re.I)
_TITLE_CLOSE = re.compile(r"</title", re.I)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_MEMORY: Final = lxml.etree.ErrorTypes.ERR_NO_MEMORY
# recover: never give up on broken markup; no_network: never fetch a DTD; comments and
# processing instructions are not text; huge_tree off: libxml2's depth and size limits hold.
_PARSER: Final = lxml.etree.HTMLParser(
    encoding="utf-8",
    recover=True,
    no_network=True,
    remove_comments=True,
    remove_pis=True,
    remove_blank_text=False,
    default_doctype=False,
    collect_ids=False,
    huge_tree=False,
)

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
    in document order (at most MAX_LINKS_PER_PAGE); `word_count` counts every visible word and
    `keywords` are the page's most frequent (keyword_counts, at most MAX_KEYWORDS_PER_PAGE, in
    first-seen order); `words` are the first MAX_WORDS_PER_PAGE visible words, in order."""

    title: str
    description: str
    headings: tuple[Heading, ...]
    links: tuple[URL, ...]
    word_count: int
    keywords: tuple[tuple[str, int], ...]
    words: tuple[str, ...] = field(repr=False)


def _collapse(text: str, limit: int) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _close_unclosed_title(html: str) -> str:
    """A `<title>` never closed is raw text to the end of the document for an HTML5 parser, so
    the whole page would become its title. End it at the next tag instead (the first `<`), as
    the html.parser-based analysis did and as the page's author meant."""
    opened = _TITLE_OPEN.search(html)
    if opened is None or _TITLE_CLOSE.search(html, opened.end()) is not None:
        return html
    tag_end = html.find(">", opened.end())
    if tag_end < 0:
        return html
    next_tag = html.find("<", tag_end + 1)
    if next_tag < 0:
        return html
    return html[:next_tag] + "</title>" + html[next_tag:]


def _parse(html: str) -> Any:
    """The document's root element, or None for a document with no element at all. Raises
    MemoryError when libxml2 ran out of memory (under the worker's RLIMIT_AS it gives up quietly,
    with a partial tree or none, and says so only in its error log)."""
    data = _close_unclosed_title(html).encode("utf-8", "replace")
    if not data.strip():
        return None
    try:
        root = lxml.etree.fromstring(data, _PARSER)
    except lxml.etree.LxmlError:
        root = None
    if any(entry.type == _NO_MEMORY for entry in _PARSER.error_log):
        raise MemoryError("libxml2 could not allocate memory")
    return root


@dataclass
class _Walk:
    """Everything one walk over the tree collects."""

    text: list[str] = field(default_factory=list)
    title: str | None = None
    description: str | None = None
    base_href: str | None = None
    hrefs: dict[str, None] = field(default_factory=dict)
    headings: list[Heading] = field(default_factory=list)
    heading: Any = None  # the heading element being read
    heading_parts: list[str] = field(default_factory=list)
    heading_chars: int = 0

    def data(self, text: str) -> None:
        self.text.append(text)
        if self.heading is not None and self.heading_chars <= 4 * MAX_HEADING_CHARS:
            self.heading_parts.append(text)
            self.heading_chars += len(text)

    def start(self, element: Any, tag: str) -> None:
        get = element.get
        if tag in ("a", "area"):
            href = get("href")
            if href is not None and len(href) <= MAX_LINK_CHARS:
                self.hrefs.setdefault(href, None)
        elif tag == "base" and self.base_href is None:
            self.base_href = get("href")
        elif tag == "meta" and self.description is None:
            name = get("name")
            if name is not None and name.lower() == "description":
                self.description = get("content") or ""
        elif tag in _HEADINGS and self.heading is None:
            self.heading = element
            self.heading_parts = []
            self.heading_chars = 0

    def end(self, element: Any, tag: str) -> None:
        if element is self.heading:
            text = _collapse("".join(self.heading_parts), MAX_HEADING_CHARS)
            if text and len(self.headings) < MAX_HEADINGS_PER_PAGE:
                self.headings.append(Heading(_HEADINGS[tag], text))
            self.heading = None


def _walk(root: Any) -> _Walk:
    """Visit the tree in document order with lxml's iterwalk (in C, no recursion, one element
    proxy alive at a time); hidden elements and the title are not descended into."""
    walk = _Walk()
    walker = lxml.etree.iterwalk(root, events=("start", "end"))
    for event, element in walker:
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag not in _INLINE:
            walk.text.append(" ")
        if event == "end":
            walk.end(element, tag)
            if element.tail:
                walk.data(element.tail)
        elif tag in _HIDDEN or tag == "title":
            walker.skip_subtree()  # its "end" still comes, with its tail
            if tag == "title" and not walk.title:
                walk.title = "".join(element.itertext())
        else:
            walk.start(element, tag)
            if element.text:
                walk.data(element.text)
    return walk


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


def _links(hrefs: Iterable[str], base: URL) -> tuple[URL, ...]:
    links: dict[URL, None] = {}
    for resolved, href in enumerate(hrefs):
        if len(links) >= MAX_LINKS_PER_PAGE or resolved >= MAX_HREFS_RESOLVED:
            break
        link = normalise_link(href, base)
        if link is not None and len(str(link)) <= MAX_LINK_CHARS:
            links.setdefault(link, None)
    return tuple(links)


def analyse_html(html: str, url: str | URL) -> PageAnalysis:
    """Analyse one HTML document fetched from `url` (the final URL, after redirects)."""
    root = _parse(html)
    walk = _walk(root) if root is not None else _Walk()
    page_url = URL(url) if isinstance(url, str) else url
    base = page_url
    if walk.base_href is not None:
        candidate = normalise_link(walk.base_href, page_url)
        if candidate is not None:
            base = candidate
    kept: list[str] = []
    count = 0

    def visible_words() -> Iterator[str]:
        nonlocal count
        for match in _WORD.finditer("".join(walk.text)):
            word = match.group()
            count += 1
            if len(kept) < MAX_WORDS_PER_PAGE:
                kept.append(word)
            yield word

    counts = keyword_counts(visible_words())
    return PageAnalysis(
        title=_collapse(walk.title or "", MAX_TITLE_CHARS),
        description=_collapse(walk.description or "", MAX_DESCRIPTION_CHARS),
        headings=tuple(walk.headings),
        links=_links(walk.hrefs, base),
        word_count=count,
        keywords=most_frequent_in_order(counts, MAX_KEYWORDS_PER_PAGE),
        words=tuple(kept),
    )


def most_frequent_in_order(counts: Counter[str], limit: int) -> tuple[tuple[str, int], ...]:
    """The `limit` most frequent keys, listed in their first-seen order: summing such lists over
    pages ranks ties by first sight, as summing whole counters would."""
    if len(counts) <= limit:
        return tuple(counts.items())
    chosen = {word for word, _ in counts.most_common(limit)}
    return tuple((word, n) for word, n in counts.items() if word in chosen)


def keyword_counts(words: Iterable[str]) -> Counter[str]:
    """Candidate keywords: lowercased words of 3 to MAX_KEYWORD_CHARS characters with a letter,
    minus stopwords and a trailing possessive 's."""
    counts: Counter[str] = Counter()
    for word in words:
        if len(word) > MAX_KEYWORD_CHARS + 2:
            continue
        lowered = word.lower().replace("’", "'")
        lowered = lowered.removesuffix("'s")
        if (
            3 <= len(lowered) <= MAX_KEYWORD_CHARS
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
