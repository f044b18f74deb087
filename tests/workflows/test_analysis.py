"""Pure HTML analysis: visible words, headings, links, keywords, reading time."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from notifier.workflows.analysis import (
    MAX_HEADINGS_PER_PAGE,
    MAX_KEYWORDS_PER_PAGE,
    MAX_LINK_CHARS,
    MAX_LINKS_PER_PAGE,
    MAX_WORDS_PER_PAGE,
    STOPWORDS,
    Heading,
    analyse_html,
    keyword_counts,
    normalise_link,
    reading_time_min,
    same_origin,
    top_keywords,
)

BASE = "http://site.test/dir/page.html"


def test_only_visible_body_words_count() -> None:
    html = """<html><head><title>Not counted</title><style>p { x: y }</style>
    <script>let notCounted = 1;</script></head><body>
    <p>one two</p><p>three</p><noscript>hidden text</noscript><template>also hidden</template>
    <svg><title>svg title</title><text>drawn</text></svg>
    <p>four&nbsp;five &amp; six-seven don't</p></body></html>"""
    analysis = analyse_html(html, BASE)
    assert analysis.words == ("one", "two", "three", "four", "five", "six-seven", "don't")
    assert analysis.word_count == 7
    assert analysis.title == "Not counted"


def test_block_tags_split_words_inline_tags_do_not() -> None:
    analysis = analyse_html("<div>alpha</div><div>beta</div><p>ga<b>mm</b>a<br>delta</p>", BASE)
    assert analysis.words == ("alpha", "beta", "gamma", "delta")


def test_headings_h1_to_h3_in_order() -> None:
    html = (
        "<h1> Main   <em>title</em></h1><h4>no</h4><h2>Second</h2><h3>Third</h3><h2></h2>"
        "<h5>no</h5><h1>Again</h1>"
    )
    assert analyse_html(html, BASE).headings == (
        Heading(1, "Main title"),
        Heading(2, "Second"),
        Heading(3, "Third"),
        Heading(1, "Again"),
    )


def test_links_are_absolute_deduplicated_and_web_only() -> None:
    html = """<a href="other.html">1</a><a href="/root">2</a><a href="other.html#x">3</a>
    <a href="https://elsewhere.test/a?b=1#c">4</a><a href="mailto:a@b.c">5</a>
    <a href="javascript:void(0)">6</a><a href="#top">7</a><a>8</a><a href="">9</a>
    <a href="http://[bad">10</a><area href="/map"><a href="  /spaced  ">11</a>"""
    links = [str(link) for link in analyse_html(html, BASE).links]
    assert links == [
        "http://site.test/dir/other.html",
        "http://site.test/root",
        "https://elsewhere.test/a?b=1",
        "http://site.test/map",
        "http://site.test/spaced",
    ]


def test_base_href_changes_link_resolution() -> None:
    html = '<head><base href="http://cdn.test/x/"></head><a href="y">y</a>'
    assert [str(u) for u in analyse_html(html, BASE).links] == ["http://cdn.test/x/y"]


def test_meta_description_and_unclosed_title() -> None:
    html = '<title>Open title<meta name="Description" content="  A  page. "><body><p>word</p>'
    analysis = analyse_html(html, BASE)
    assert analysis.title == "Open title"
    assert analysis.words == ("word",)


def test_self_closing_title_and_svg_hide_nothing() -> None:
    analysis = analyse_html("<title/><svg/><h1/><p>still here</p>", BASE)
    assert analysis.words == ("still", "here")


def test_broken_marked_sections_do_not_stop_the_parse() -> None:
    analysis = analyse_html("<p>before</p><![ x ]><![bogus[x]]><p>after</p>", BASE)
    assert analysis.words == ("before", "after")


def test_keywords_skip_stopwords_short_words_numbers_and_possessives() -> None:
    text = "The widget's widget WIDGETS of 2024 ok an gadget gadget alpha"
    words = text.split()
    counts = keyword_counts(words)
    assert counts == Counter({"widget": 2, "widgets": 1, "gadget": 2, "alpha": 1})
    assert top_keywords(counts, 2) == [("widget", 2), ("gadget", 2)]
    assert {"the", "and", "with", "about"} <= STOPWORDS


def test_reading_time_rounds_up_to_a_tenth_of_a_minute() -> None:
    assert reading_time_min(0) == 0.0
    assert reading_time_min(1) == 0.1
    assert reading_time_min(200) == 1.0
    assert reading_time_min(201) == 1.1
    assert reading_time_min(35) == 0.2


def test_normalise_link_and_origin() -> None:
    base = URL("http://Site.TEST:80/a/b")
    assert normalise_link("../c#d", base) == URL("http://site.test/c")
    assert normalise_link("ftp://site.test/x", base) is None
    assert normalise_link("http://site.test:80/x", base) == URL("http://site.test/x")
    assert normalise_link("HTTPS://SITE.test:443/%7Ex", base) == URL("https://site.test/~x")
    assert same_origin(URL("http://site.test/x"), URL("http://site.test:80/y"))
    assert not same_origin(URL("http://site.test/"), URL("https://site.test/"))
    assert not same_origin(URL("http://site.test/"), URL("http://site.test:8080/"))


_MARKUP = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "<", ">", "</", "/>", "<![", "]]>", "<!--", "-->", "<!", "<?", "<title>",
                "</title>", "<script>", "</script>", "<svg>", "</svg>", "<h1>", "</h2>", "<a href=",
                '"', "'", "&", "&#", "&amp;", "<base href=", "<meta name=description content=",
                "<p>", "</p>", " ", "word", "CDATA[", "if", "\x00", "é",
            ]
        ),
        st.text(max_size=10),
    ),
    max_size=30,
).map("".join)  # fmt: skip


@given(_MARKUP)
@settings(max_examples=300, deadline=None)
def test_any_markup_is_analysed_without_raising(html: str) -> None:
    analysis = analyse_html(html, BASE)
    assert analysis.word_count == len(analysis.words)  # under the cap, every word is kept
    assert all(link.scheme in ("http", "https") and not link.fragment for link in analysis.links)


# ---------------------------------------------------------------------------------------------
# What a page can make the analysis keep is capped; counts still cover the whole page


def test_links_are_capped_in_document_order() -> None:
    html = "".join(f'<a href="/p/{i}">p</a>' for i in range(MAX_LINKS_PER_PAGE + 500))
    links = analyse_html(html, BASE).links
    assert len(links) == MAX_LINKS_PER_PAGE
    assert str(links[0]) == "http://site.test/p/0"
    assert str(links[-1]) == f"http://site.test/p/{MAX_LINKS_PER_PAGE - 1}"


def test_overlong_links_are_not_kept() -> None:
    long_path = "/" + "x" * MAX_LINK_CHARS
    html = f'<a href="{long_path}">long</a><a href="/short">short</a>'
    assert [str(u) for u in analyse_html(html, BASE).links] == ["http://site.test/short"]


def test_words_are_counted_in_full_but_kept_up_to_the_cap() -> None:
    html = "<p>" + "alpha beta " * MAX_WORDS_PER_PAGE + "</p>"
    analysis = analyse_html(html, BASE)
    assert analysis.word_count == 2 * MAX_WORDS_PER_PAGE
    assert len(analysis.words) == MAX_WORDS_PER_PAGE
    assert analysis.keywords == (("alpha", MAX_WORDS_PER_PAGE), ("beta", MAX_WORDS_PER_PAGE))


def test_keywords_keep_the_most_frequent_in_first_seen_order() -> None:
    rare = " ".join(f"rare{i}x" for i in range(MAX_KEYWORDS_PER_PAGE))  # each once, first
    common = " ".join(["zebra"] * 3 + ["yak"] * 2)
    analysis = analyse_html(f"<p>{rare} {common}</p>", BASE)
    assert len(analysis.keywords) == MAX_KEYWORDS_PER_PAGE
    kept = [word for word, _ in analysis.keywords]
    # zebra and yak outrank the rare words; the rare ones kept are the first seen, in order.
    assert kept[-2:] == ["zebra", "yak"]
    assert kept[:-2] == [f"rare{i}x" for i in range(MAX_KEYWORDS_PER_PAGE - 2)]


def test_overlong_words_count_but_are_not_keywords() -> None:
    analysis = analyse_html("<p>" + "a" * 100_000 + " widget</p>", BASE)
    assert analysis.word_count == 2
    assert analysis.keywords == (("widget", 1),)


def test_headings_are_capped() -> None:
    html = "".join(f"<h2>Section {i}</h2>" for i in range(MAX_HEADINGS_PER_PAGE + 10))
    headings = analyse_html(html, BASE).headings
    assert len(headings) == MAX_HEADINGS_PER_PAGE
    assert headings[-1] == Heading(2, f"Section {MAX_HEADINGS_PER_PAGE - 1}")


@pytest.mark.parametrize(
    "html",
    [
        "<a " * 100_000,  # html.parser took minutes on this
        "<div>" * 100_000,  # libxml2 stops at 256 levels
        "<!--" * 100_000,
        "</" * 100_000,
        "<title>" + "<title " * 50_000,
        "",
        "\x00" * 1000,
    ],
)
def test_hostile_markup_yields_an_analysis(html: str) -> None:
    analysis = analyse_html(html, BASE)
    assert analysis.word_count >= 0 and analysis.links == ()
