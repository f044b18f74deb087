"""The redactor masks Discord bot tokens by shape and webhook tokens in URLs, wherever they sit in
a text, and leaves other text as it was. Its fast path (the full token pattern only runs on text
that holds a token's middle part) must never let a token through: checked against the full
pattern on generated texts made of the characters tokens are made of."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.logs import MASK, Redactor

TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
PROSE = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2_000
FULL_TOKEN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")


def test_a_bot_token_is_masked_at_the_start_middle_and_end_of_a_long_text() -> None:
    redactor = Redactor()
    for text in (TOKEN + PROSE, PROSE + TOKEN, PROSE + f"Bot {TOKEN} failed. " + PROSE):
        redacted = redactor.redact(text)
        assert TOKEN not in redacted
        assert "GhIjKl" not in redacted
        assert MASK in redacted


def test_prose_with_dots_and_urls_is_left_as_it_was() -> None:
    text = PROSE + " see https://example.org/a.b.c/page.html, v1.2.3.4 and e.g. i.e. etc."
    assert Redactor().redact(text) == text


def test_a_webhook_token_is_masked_and_its_id_kept() -> None:
    text = PROSE + " https://discord.com/api/webhooks/123456789/abcDEF-123_xyz.secret posted"
    redacted = Redactor().redact(text)
    assert "abcDEF-123_xyz.secret" not in redacted
    assert f"/webhooks/123456789/{MASK} posted" in redacted


def test_registered_secrets_are_masked_longest_first() -> None:
    redactor = Redactor()
    redactor.add(["hunter2", "hunter2-and-more"])
    assert redactor.redact("pw hunter2-and-more, hunter2.") == f"pw {MASK}, {MASK}."


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["a", "Z", "9", "_", "-", ".", " ", "aaaaaaa", "AbCdEfGhIjKlMnOpQrStUvWxYz01"]
        ),
        max_size=40,
    )
)
def test_the_fast_path_masks_exactly_what_the_full_pattern_masks(parts: list[str]) -> None:
    text = "".join(parts)
    assert Redactor().redact(text) == FULL_TOKEN.sub(MASK, text)
