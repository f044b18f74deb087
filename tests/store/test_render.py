"""The renderer: the richest mode that fits, within every Discord limit, for any result."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from notifier.discord import codes
from notifier.discord.embeds import (
    RenderedResult,
    export_json,
    export_markdown,
    render_record_list,
    render_result,
    render_status_line,
    rendered_as_text,
    validate_embeds,
)
from notifier.records import StoredResult, WorkflowRecord, WorkflowStatus
from notifier.store.document import build_document, encode_for_storage

from .support import EXAMPLE_RESULT, START_S

MIB = 1024 * 1024


def _record(
    status: WorkflowStatus = WorkflowStatus.COMPLETED,
    *,
    url: str = "https://example.com/",
    error: str = "",
    command: str = "autointel",
) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id="0123456789abcdef0123456789abcdef",
        command=command,
        user_id=42,
        options={"url": url, "depth": "standard"},
        user_name="ada",
        status=status,
        created_at=START_S,
        finished_at=START_S + 123,
        error=error,
    )


def _stored(record: WorkflowRecord, result: dict[str, Any] | None) -> StoredResult:
    """What the store hands back for `result`: the renderer never sees anything else."""
    _, document = encode_for_storage(record, result)
    return StoredResult(record, document)


def _within_limits(rendered: RenderedResult, limit_bytes: int) -> None:
    assert validate_embeds(rendered.embeds) == []
    assert 1 <= len(rendered.embeds) <= codes.EMBEDS_PER_MESSAGE_MAX
    assert len(rendered.content) <= codes.CONTENT_MAX
    assert all(f.size_bytes <= limit_bytes for f in rendered.files)
    assert sum(f.size_bytes for f in rendered.files) <= codes.REQUEST_SIZE_MAX_BYTES
    assert (rendered.mode == "attachments") == bool(rendered.files)
    json.dumps(rendered.embeds)  # what nextcord sends must be JSON


def _all_text(rendered: RenderedResult) -> str:
    return json.dumps(rendered.embeds, ensure_ascii=False)


# -- modes --------------------------------------------------------------------------------------

MODE_CASES = [
    pytest.param(EXAMPLE_RESULT, codes.ATTACHMENT_SIZE_DEFAULT_BYTES, "embeds", id="example"),
    pytest.param({}, codes.ATTACHMENT_SIZE_DEFAULT_BYTES, "embeds", id="empty-result"),
    pytest.param({"title": "T" * 300}, 10 * MIB, "attachments", id="title-too-long"),
    pytest.param({"summary": "s" * 4097}, 10 * MIB, "attachments", id="summary-too-long"),
    pytest.param({"notes": "n" * 1025}, 10 * MIB, "attachments", id="field-too-long"),
    pytest.param({f"k{i}": i for i in range(30)}, 10 * MIB, "embeds", id="30-fields-two-embeds"),
    pytest.param({f"key{i}": "v" * 40 for i in range(300)}, 10 * MIB, "attachments", id="300-keys"),
    pytest.param({"k" * 257: 1}, 10 * MIB, "attachments", id="key-too-long"),
    pytest.param({"blob": "x" * (5 * MIB)}, 10 * MIB, "attachments", id="5MiB-string"),
    pytest.param({"blob": "x" * (11 * MIB)}, 10 * MIB, "summary", id="11MiB-string"),
    pytest.param({"blob": "x" * (13 * MIB)}, 25 * MIB, "summary", id="two-files-over-25MiB"),
    pytest.param({"notes": "n" * 2000}, 0, "summary", id="no-attachments-allowed"),
    pytest.param({"notes": "n" * 2000}, 100, "summary", id="attachments-too-small"),
    pytest.param(EXAMPLE_RESULT, 0, "embeds", id="fits-without-files"),
]


@pytest.mark.parametrize(("result", "limit_bytes", "mode"), MODE_CASES)
def test_the_richest_mode_that_fits_is_chosen(
    result: dict[str, Any], limit_bytes: int, mode: str
) -> None:
    rendered = render_result(_stored(_record(), result), attachment_limit_bytes=limit_bytes)

    assert rendered.mode == mode
    _within_limits(rendered, limit_bytes)


def test_the_example_result_reads_well_as_embeds() -> None:
    rendered = render_result(_stored(_record(), EXAMPLE_RESULT))

    [embed] = rendered.embeds
    assert embed["title"] == "✅ Example Domain"
    assert embed["description"] == EXAMPLE_RESULT["summary"]
    assert embed["url"] == "https://example.com/"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Pages analysed"] == "12"
    assert fields["Top keywords"] == "example (12), domain (8), documentation (5)"
    assert fields["Links"] == "**Internal:** 4\n**External:** 2"
    assert "https://example.com/a" in fields["Pages"]
    assert "0123456789abcdef0123456789abcdef" in embed["footer"]["text"]
    assert "2m 03s" in embed["footer"]["text"]
    assert rendered.content.startswith("✅ `autointel` completed in 2m 03s")


def test_what_json_cannot_hold_is_shown_as_the_store_keeps_it() -> None:
    """NaN is null once stored, a set or a tuple a list: the renderer shows the stored values, so
    the first delivery and every later read agree."""
    rendered = render_result(
        _stored(_record(), {"score": float("nan"), "tags": {"b"}, "pair": ("x", 2), "n": 2**70})
    )

    fields = {f["name"]: f["value"] for f in rendered.embeds[0]["fields"]}
    assert fields == {"Score": "—", "Tags": "b", "Pair": "x, 2", "N": "1180591620717411303424"}


def test_many_fields_continue_in_further_embeds() -> None:
    rendered = render_result(_stored(_record(), {f"k{i}": i for i in range(60)}))

    assert rendered.mode == "embeds"
    assert [len(e["fields"]) for e in rendered.embeds] == [25, 25, 10]
    assert "footer" in rendered.embeds[-1]


def test_attachments_hold_the_whole_result() -> None:
    result = {
        **EXAMPLE_RESULT,
        "pages": [{"url": f"https://e.x/{i}", "title": "t" * 40} for i in range(400)],
    }
    rendered = render_result(_stored(_record(), result))

    assert rendered.mode == "attachments"
    files = {f.filename: f.data for f in rendered.files}
    assert set(files) == {
        "0123456789abcdef0123456789abcdef.json",
        "0123456789abcdef0123456789abcdef.md",
    }
    exported = json.loads(files["0123456789abcdef0123456789abcdef.json"])
    assert exported["result"] == result
    markdown = files["0123456789abcdef0123456789abcdef.md"].decode()
    assert markdown.startswith("# ✅ Example Domain")
    assert "| https://e.x/399 |" in markdown
    [embed] = rendered.embeds
    assert "attached" in embed["description"]
    assert embed["description"].startswith(EXAMPLE_RESULT["summary"])


def test_the_summary_mode_says_how_to_export() -> None:
    rendered = render_result(_stored(_record(), {"blob": "x" * (11 * MIB)}))

    [embed] = rendered.embeds
    assert (
        "python -m notifier results export 0123456789abcdef0123456789abcdef" in embed["description"]
    )


def test_a_failed_workflow_shows_its_error() -> None:
    record = _record(WorkflowStatus.FAILED, error="the site answered 503")
    rendered = render_result(
        _stored(record, {"error": "the site answered 503", "last_stage": "fetch"})
    )

    assert rendered.mode == "embeds"
    assert "**Error:** the site answered 503" in rendered.embeds[0]["description"]
    assert rendered.embeds[0]["title"].startswith("❌")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (True, "yes"),
        (False, "no"),
        (3.5, "3.5"),
        (float("nan"), "—"),
        ("", "—"),
        ("   ", "—"),
        ([], "—"),
        ({}, "—"),
        (["a", "b"], "a, b"),
        ([["word", 12]], "word (12)"),
        ({"a": 1}, "**A:** 1"),
        (2**70, "1180591620717411303424"),
        ("half a pair: \ud83d", "half a pair: ?"),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, str) else repr(value)[:20],
)
def test_values_of_any_type_become_text(value: object, shown: str) -> None:
    rendered = render_result(_stored(_record(), {"value": value}))

    [field] = rendered.embeds[0]["fields"]
    assert field["value"] == shown


def test_unicode_is_counted_in_characters() -> None:
    title = "漢" * 254  # 254 characters, 762 UTF-8 bytes: with "✅ " exactly 256
    rendered = render_result(_stored(_record(), {"title": title}))

    assert rendered.mode == "embeds"
    assert len(rendered.embeds[0]["title"]) == 256


def test_deep_nesting_renders() -> None:
    deep: Any = "bottom"
    for _ in range(200):
        deep = {"level": [deep]}
    rendered = render_result(_stored(_record(), {"deep": deep}))

    _within_limits(rendered, codes.ATTACHMENT_SIZE_DEFAULT_BYTES)
    assert "bottom" in export_markdown(_stored(_record(), {"deep": deep}))


def test_a_workflow_that_stored_no_result_says_so() -> None:
    stored = _stored(_record(), None)

    assert render_result(stored).mode == "embeds"
    assert "No result was stored" in export_markdown(stored)


def test_a_result_that_is_not_a_mapping_is_shown_under_result() -> None:
    record = _record()
    document = build_document(record, None)
    document["result"] = ["a", "b"]

    rendered = render_result(StoredResult(record, document))

    assert {f["name"]: f["value"] for f in rendered.embeds[0]["fields"]} == {"Result": "a, b"}


@pytest.mark.parametrize(
    "url",
    ["not a url", "javascript:alert(1)", "https://", "http://exa mple.com", "https://ü.example/"],
)
def test_only_a_safe_url_becomes_the_embed_link(url: str) -> None:
    rendered = render_result(_stored(_record(url=url), EXAMPLE_RESULT))

    assert "url" not in rendered.embeds[0]


# -- validate_embeds ------------------------------------------------------------------------------

VIOLATIONS = [
    pytest.param([{"title": "t" * 257}], "title", id="title"),
    pytest.param([{"description": "d" * 4097}], "description", id="description"),
    pytest.param([{"fields": [{"name": "n", "value": "v"}] * 26}], "fields > 25", id="26-fields"),
    pytest.param([{"fields": [{"name": "", "value": "v"}]}], "must not be empty", id="empty-name"),
    pytest.param(
        [{"fields": [{"name": "n", "value": " "}]}], "must not be empty", id="blank-value"
    ),
    pytest.param([{"fields": [{"name": "n" * 257, "value": "v"}]}], "name", id="name"),
    pytest.param([{"fields": [{"name": "n", "value": "v" * 1025}]}], "value", id="value"),
    pytest.param([{"title": "t", "footer": {"text": "f" * 2049}}], "footer", id="footer"),
    pytest.param([{"title": "t", "author": {"name": "a" * 257}}], "author", id="author"),
    pytest.param(
        [{"description": "d" * 3000}, {"description": "d" * 3001}], "across all", id="6001"
    ),
    pytest.param([{"title": "t"}] * 11, "11 embeds", id="11-embeds"),
    pytest.param([{"title": 5}], "must be text", id="not-text"),
    pytest.param([{"color": 1}], "empty embed", id="empty"),
    pytest.param([{"title": "t", "footer": "f"}], "footer: must be an object", id="footer-shape"),
    pytest.param([{"title": "t", "fields": ["x"]}], "must be an object", id="field-shape"),
]


@pytest.mark.parametrize(("embeds", "problem"), VIOLATIONS)
def test_every_broken_limit_is_named(embeds: list[dict[str, Any]], problem: str) -> None:
    problems = validate_embeds(embeds)

    assert len(problems) == 1, problems
    assert problem in problems[0]


def test_embeds_at_the_limits_pass() -> None:
    embeds = [
        {"title": "t" * 256, "description": "d" * 2000, "footer": {"text": "f" * 100}},
        {"fields": [{"name": "n" * 10, "value": "v" * 1024}] * 3, "footer": {"text": "x" * 82}},
    ]
    assert sum([256, 2000, 100, 30, 3072, 82]) == 5540
    assert validate_embeds(embeds) == []


# -- lists ----------------------------------------------------------------------------------------


def test_a_status_line_has_id_status_command_url_and_age() -> None:
    line = render_status_line(_record(url="https://example.com/a_b*c"), now=START_S + 3 * 3600)

    assert line == (
        "✅ `01234567` · **completed** · /autointel · https://example.com/a\\_b\\*c · 3h ago"
    )


def test_a_status_line_stays_short() -> None:
    line = render_status_line(_record(url="https://example.com/" + "p" * 5000), now=START_S)

    assert len(line) <= 200
    assert "…" in line


def test_the_results_list_pages() -> None:
    records = [_record(url="https://example.com/" + "x" * 2000) for _ in range(25)]

    embed = render_record_list(records, page=2, total=60, page_size=25, now=START_S + 86_400 * 2)

    assert validate_embeds([embed]) == []
    assert embed["footer"]["text"] == "Page 2 of 3 · 60 results"
    assert embed["description"].count("2d ago") == 25


def test_an_empty_results_list_says_so() -> None:
    embed = render_record_list([], page=1, total=0, page_size=25, now=START_S)

    assert embed["description"] == "No results yet."
    assert embed["footer"]["text"] == "Page 1 of 1 · 0 results"


def test_rendered_text_for_a_terminal() -> None:
    text = rendered_as_text(render_result(_stored(_record(), EXAMPLE_RESULT)))

    assert "Example Domain" in text
    assert "Top keywords: example (12), domain (8), documentation (5)" in text


PAGE_TEXT = "@everyone <@&7> <@!8> [verify](https://evil.example/login)"
PAGE_RESULT = {
    "title": PAGE_TEXT,
    "summary": PAGE_TEXT,
    PAGE_TEXT: PAGE_TEXT,  # a key too: it becomes a field's name
    "pair": [PAGE_TEXT, 3],
    "deep": {"a": {"b": {"c": [PAGE_TEXT]}}},  # past the depth shown as JSON text
}


@pytest.mark.parametrize(
    ("result", "limit_bytes", "mode"),
    [
        pytest.param(PAGE_RESULT, codes.ATTACHMENT_SIZE_DEFAULT_BYTES, "embeds", id="embeds"),
        pytest.param({**PAGE_RESULT, "n": "n" * 1025}, 10 * MIB, "attachments", id="attachments"),
        pytest.param({**PAGE_RESULT, "n": "n" * 1025}, 0, "summary", id="summary"),
    ],
)
def test_page_text_is_drawn_inert_in_every_mode_and_exported_exactly(
    result: dict[str, Any], limit_bytes: int, mode: str
) -> None:
    stored = _stored(_record(error=PAGE_TEXT, url=f"https://example.com/{PAGE_TEXT}"), result)
    rendered = render_result(stored, attachment_limit_bytes=limit_bytes)
    assert rendered.mode == mode
    shown = "\n".join(
        [
            rendered_as_text(rendered),
            export_markdown(stored),
            render_status_line(stored.record, now=START_S),
        ]
    )

    assert "verify" in shown and "everyone" in shown  # the words are all there ...
    for live in ("@everyone", "<@&7>", "<@!8>", "](", "@&7", "@!8"):
        assert live not in shown  # ... but nothing in them pings or links
    assert json.loads(export_json(stored))["result"] == result  # the export is the document


def test_the_json_export_is_the_stored_document() -> None:
    stored = _stored(_record(), {**EXAMPLE_RESULT, "score": float("inf")})

    exported = json.loads(export_json(stored))

    assert exported == stored.document
    assert exported["format"] == "notifier.result/1"
    assert exported["workflow_id"] == "0123456789abcdef0123456789abcdef"
    assert exported["result"] == {**EXAMPLE_RESULT, "score": None}


# -- any result ---------------------------------------------------------------------------------


def _long(min_repeat: int, max_repeat: int) -> st.SearchStrategy[str]:
    # Long text built cheaply: generating it character by character dominates the test's time.
    return st.builds(
        lambda text, times: text * times,
        st.text(min_size=1, max_size=4),
        st.integers(min_repeat, max_repeat),
    )


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | _long(50, 1500)
)
_keys = st.text(max_size=20) | _long(30, 100)
_json_like = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=30,
)
_results = st.dictionaries(_keys, _json_like, max_size=35)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    result=_results,
    status=st.sampled_from(list(WorkflowStatus)),
    error=st.text(max_size=3000),
    url=st.text(max_size=600),
    limit_bytes=st.sampled_from([0, 300, 4096, codes.ATTACHMENT_SIZE_DEFAULT_BYTES]),
)
def test_any_json_like_result_renders_within_every_limit(
    result: dict[str, Any], status: WorkflowStatus, error: str, url: str, limit_bytes: int
) -> None:
    record = _record(status, url=url, error=error)

    stored = _stored(record, result)

    rendered = render_result(stored, attachment_limit_bytes=limit_bytes)

    event(rendered.mode)  # --hypothesis-show-statistics shows that every mode is reached
    _within_limits(rendered, limit_bytes)
    if rendered.mode == "attachments":
        exported = json.loads(rendered.files[0].data)
        assert exported["result"] == stored.document["result"]
