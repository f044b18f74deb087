"""README "Users' own notices: running /notify": the receiver's five lines verify a callback the
bot signs (and refuse a tampered or an old one), and the limits it states are the code's."""

from __future__ import annotations

import time
from typing import Any

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from notifier.events import Event, Notice
from notifier.usernotify.verification import (
    CODE_DIGITS,
    CODE_TTL_S,
    CODES_PER_ADDRESS_PER_DAY,
    CODES_PER_USER_PER_DAY,
    MAX_WRONG_CODES,
)
from notifier.usernotify.webhook import callback_body, new_secret, signed_headers, webhook_id

from .readme import block, section

NOTICE = Notice(
    event=Event.PERSISTED,
    workflow_id="0123456789abcdef0123456789abcdef",
    user_id=42,
    user_name="alice",
    command="autointel",
    summary="Found three pages.",
)


def _receive(body: bytes, headers: dict[str, str], secret: str) -> dict[str, Any]:
    """Run the README's receiver block with what a request brought; the names it printed."""
    printed: list[tuple[Any, ...]] = []
    names: dict[str, Any] = {
        "secret": secret,
        "request_body": body,
        "request_headers": headers,
        "print": lambda *args: printed.append(args),
    }
    exec(block("python", "from standardwebhooks import Webhook").text, names)
    return {"printed": printed, "payload": names["payload"]}


def _signed(secret: str, *, at: float) -> tuple[bytes, dict[str, str]]:
    body = callback_body(NOTICE)
    return body, signed_headers(secret, msg_id=webhook_id("key-1"), body=body, now_s=at)


def test_the_receiver_in_the_readme_verifies_a_callback_the_bot_signed() -> None:
    secret = new_secret()
    body, headers = _signed(secret, at=time.time())

    received = _receive(body, headers, secret)

    retrieval = f"/retrieve_results workflow_id:{NOTICE.workflow_id}"
    assert received["printed"] == [("persisted", NOTICE.workflow_id, retrieval)]
    assert received["payload"]["command"] == "autointel"


@pytest.mark.parametrize("tampering", ["body", "old timestamp", "other secret"])
def test_the_receiver_in_the_readme_refuses_what_the_bot_did_not_send(tampering: str) -> None:
    secret = new_secret()
    body, headers = _signed(secret, at=time.time() - (600 if tampering == "old timestamp" else 0))
    if tampering == "body":
        body = body.replace(b"Found three", b"Found four")

    with pytest.raises(WebhookVerificationError):
        _receive(body, headers, new_secret() if tampering == "other secret" else secret)


def test_the_limits_the_readme_states_are_the_codes() -> None:
    text = " ".join(section("Users' own notices: running /notify").split())
    assert (
        f"a {CODE_DIGITS}-digit code, valid {CODE_TTL_S / 60:.0f} minutes, {MAX_WRONG_CODES} "
        "wrong attempts and it is void" in text
    )
    assert (
        f"at most {CODES_PER_USER_PER_DAY} codes per user and {CODES_PER_ADDRESS_PER_DAY} per "
        "address (across users) per day" in text
    )
