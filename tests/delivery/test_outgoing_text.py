"""Text sent to Discord never holds a lone surrogate (nextcord with orjson refuses it), pings nobody
but the requester, and shows a page's words without letting them ping or hide a link."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import nextcord.utils
import pytest

from notifier.discord.io import OutgoingMessage
from notifier.discord.messages import error_message, interrupted_message, progress_message
from notifier.records import ProgressState, StoredResult, WorkflowRecord, WorkflowStatus


def test_nextcord_here_encodes_with_orjson_which_refuses_lone_surrogates() -> None:
    # The fact the sanitizing exists for: this project installs orjson, so nextcord uses it.
    assert nextcord.utils.HAS_ORJSON
    with pytest.raises(TypeError, match="surrogates"):
        nextcord.utils.to_json({"content": "half a pair: \ud83d"})


def test_every_text_of_a_message_loses_its_lone_surrogates_and_keeps_the_rest() -> None:
    message = OutgoingMessage(
        content="half a pair: \ud83d, whole: 🚀",
        embeds=[{"title": "\udfff", "fields": [{"name": "ключ", "value": "a\ud800z"}]}],
        extra={"components": [{"label": "x\udc00"}]},
    )

    payload = message.payload()

    assert payload["content"] == "half a pair: ?, whole: 🚀"
    assert payload["embeds"] == [{"title": "?", "fields": [{"name": "ключ", "value": "a?z"}]}]
    assert payload["components"] == [{"label": "x?"}]
    nextcord.utils.to_json(payload)  # and nextcord can send it


# -- mentions and masked links (issue 15, item 6) -----------------------------------------------

PAGE_TEXT = "@everyone @here <@&7> <@!8> <@9> [verify](https://evil.example/login)"
LIVE = ("@everyone", "@here", "<@&7>", "<@!8>", "<@9>", "](")


def _record(**changes: object) -> WorkflowRecord:
    fields: dict[str, Any] = {
        "workflow_id": "0123456789abcdef0123456789abcdef",
        "command": "autointel",
        "user_id": 42,
        "options": {"url": f"http://x/{PAGE_TEXT}"},
        "created_at": 1_800_000_000.0,
    }
    fields.update(changes)
    return WorkflowRecord(**fields)  # type: ignore[arg-type]


STATUS_MESSAGES = [
    pytest.param(
        lambda: progress_message(
            _record(), ProgressState(PAGE_TEXT, 0.5, PAGE_TEXT), now=1_800_000_010.0
        ),
        id="progress",
    ),
    pytest.param(lambda: error_message(_record(), PAGE_TEXT), id="error"),
    pytest.param(
        lambda: interrupted_message(
            StoredResult(
                _record(status=WorkflowStatus.INTERRUPTED),
                {"result": {"last_stage": PAGE_TEXT, "last_progress": 0.4}},
            )
        ),
        id="interrupted",
    ),
]


@pytest.mark.parametrize("build", STATUS_MESSAGES)
def test_status_messages_show_page_text_that_pings_nobody_and_links_nowhere(
    build: Callable[[], OutgoingMessage],
) -> None:
    payload = build().payload()
    shown = json.dumps([payload["content"], payload["embeds"]], ensure_ascii=False)

    assert "evil.example" in shown and "everyone" in shown  # the words are there ...
    assert [live for live in LIVE if live in shown] == []  # ... inert
    assert payload["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(OutgoingMessage(content="hi"), {"parse": []}, id="nobody"),
        pytest.param(
            OutgoingMessage(content="<@42> hi", mention_user_id=42),
            {"parse": [], "users": ["42"]},
            id="the-requester-in-a-channel",
        ),
        pytest.param(
            OutgoingMessage(content="hi", extra={"allowed_mentions": {"parse": ["everyone"]}}),
            {"parse": []},
            id="extra-cannot-widen-it",
        ),
    ],
)
def test_every_payload_says_whom_it_may_ping(
    message: OutgoingMessage, expected: dict[str, list[str]]
) -> None:
    assert message.payload()["allowed_mentions"] == expected
    assert message.payload(for_edit=True)["allowed_mentions"] == expected
