"""What a page worker sends back is checked field by field before the bot holds any of it: a
worker has just parsed a stranger's page, so its answer is data to verify, never to trust."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from notifier.workflows.analysis import (
    MAX_KEYWORDS_PER_PAGE,
    MAX_LINKS_PER_PAGE,
    MAX_TITLE_CHARS,
    analyse_html,
)
from notifier.workflows.pagewire import LinkKind, PageSummary, summarise

SITE = URL("http://site.test/")
HTML = """<title>Home</title><h1>Welcome</h1><p>Widgets.</p>
<a href="/about">a</a> <a href="/report.pdf">r</a> <a href="https://else.test/">e</a>
<a href="http://site.test:8080/">other port</a>"""


def good() -> dict[str, Any]:
    return summarise(analyse_html(HTML, SITE), SITE).to_wire()


def test_links_are_sorted_relative_to_the_site() -> None:
    summary = summarise(analyse_html(HTML, SITE), SITE)
    assert summary.links == (
        ("http://site.test/about", LinkKind.SITE_PAGE),
        ("http://site.test/report.pdf", LinkKind.SITE),
        ("https://else.test/", LinkKind.ELSEWHERE),
        ("http://site.test:8080/", LinkKind.ELSEWHERE),
    )


def test_a_summary_survives_the_wire() -> None:
    summary = summarise(analyse_html(HTML, SITE), SITE)
    assert PageSummary.from_wire(summary.to_wire()) == summary


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", None),
        ("title", 42),
        ("title", "x" * (MAX_TITLE_CHARS + 1)),
        ("word_count", -1),
        ("word_count", True),
        ("word_count", "12"),
        ("headings", [[4, "h4 is not kept"]]),
        ("headings", [[1]]),
        ("headings", "not a list"),
        ("keywords", [["word", -3]]),
        ("keywords", [["word", 1]] * (MAX_KEYWORDS_PER_PAGE + 1)),
        ("links", [["http://site.test/", 7]]),
        ("links", [["http://site.test/", False]]),
        ("links", [["http://site.test/", 0]] * (MAX_LINKS_PER_PAGE + 1)),
        ("links", [[{"url": "x"}, 0]]),
    ],
)
def test_a_reply_off_the_format_or_over_a_cap_is_refused(field: str, value: object) -> None:
    reply = good()
    reply[field] = value
    with pytest.raises(ValueError, match=field):
        PageSummary.from_wire(reply)


def test_a_reply_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError):
        PageSummary.from_wire([good()])
