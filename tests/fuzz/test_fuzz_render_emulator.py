"""Fuzzing the result renderer end to end: whatever a workflow returns, Discord takes the message.

`tests/store/test_render.py` checks the renderer's output against the limits as pure data. Here
each random result (unicode and lone surrogates, deep nesting, huge strings, hundreds of keys, odd
records: long errors, bad URLs, impossible times) is rendered by `render_result` and really sent by
the project's bot to the emulator, twice:

* through the delivery ladder (`Delivery.deliver` on the channel rung: `DiscordIO.channel_send`,
  the raw JSON/multipart request the runner makes, mention prefix included);
* through nextcord's own model (`Embed.from_dict`, `nextcord.File`, `TextChannel.send`), the
  conversion `/retrieve_results` uses for its followup.

The emulator enforces Discord's limits (content, embed fields and totals, 10 embeds, attachment
size): it must never answer 400 (50035, 50006) or 413, and the message it stores must carry the
embeds, or the two attachments when the renderer chose files.

How this runs under pytest-asyncio: the test is an `async def` decorated with `@given`;
pytest-asyncio recognises hypothesis tests and runs each example's coroutine on the test's event
loop, so the function-scoped `emulator` and `bot` fixtures are created once and shared by all
500 examples (hence `HealthCheck.function_scoped_fixture` is suppressed: sharing is intended,
and every example uses fresh workflow ids and checks only the requests it made).
"""

from __future__ import annotations

import io
import math
from typing import Any

import nextcord
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from notifier.app import NotifierBot
from notifier.discord.compat import connection_state
from notifier.discord.delivery import Delivery, DeliveryTarget, Rung
from notifier.discord.embeds import render_result
from notifier.discord.io import OutgoingMessage
from notifier.records import StoredResult, WorkflowRecord, WorkflowStatus, new_workflow_id
from notifier.store.document import encode_for_storage
from notifier.testing import DiscordEmulator

from .conftest import EXAMPLES

ATTACHMENT_LIMIT = 48 * 1024  # small, so all three modes (embeds, files, summary) come up
REFUSED = {400, 413}

# ---------------------------------------------------------------------------------------------
# Results

TRICKY = st.sampled_from(
    [
        "", " ", "\n", "\u200b", "\ufeff", "\u2028", "\ud800", "\udfff", "a\ud83dz", "💥" * 3,
        "e\u0301", "ﷺ", "𒐫", "\x00", "\x1b[31m", "@everyone", "<@123>", "`" * 5, "|" * 4,
        "**bold**", "> quote", "http://x", "\t\t", "ª", "\U0010ffff", "\u0000\u0001",
    ]
)  # fmt: skip
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=None), max_size=40),  # surrogates too
    TRICKY,
    st.builds(
        lambda c, n: c * n, st.sampled_from(["x", "é", "💥", "\n", " ", "ﷺ"]), st.integers(0, 5000)
    ),
)
HUGE = st.builds(
    lambda c, n: c * n, st.sampled_from(["y", "ü", "🙂", "ab\n"]), st.integers(1000, 120_000)
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.builds(
        lambda n, sign: sign * (10**n - 1), st.integers(4200, 4300), st.sampled_from([1, -1])
    ),
    # (up to the 4300 digits int -> str converts: past them the store refuses the result and the
    # workflow is stored as failed, tests/bot/test_same_result_everywhere.py)
    st.floats(),
    TEXT,
)
KEY = st.one_of(st.text(max_size=12), TRICKY, st.sampled_from(["title", "summary", "url"]))


def _nest(value: Any, depth: int) -> Any:
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(KEY, inner, max_size=6)),
    max_leaves=25,
)
RESULT = st.one_of(
    st.dictionaries(KEY, VALUE, max_size=8),
    st.dictionaries(KEY, VALUE, min_size=20, max_size=80),  # many fields: several embeds
    st.builds(
        lambda n, v: {f"key_{i}": v for i in range(n)}, st.integers(26, 400), SCALAR
    ),  # beyond 10 embeds of 25 fields
    st.builds(lambda text, title: {"title": title, "summary": text}, HUGE, TEXT),
    # Near the limits: every field fits alone, the sum may not (6000 across all embeds), the
    # description and title may sit right at theirs.
    st.builds(
        lambda n, size, char, summary, title: {
            "title": char * title,
            "summary": char * summary,
            **{f"field_{i}": char * size for i in range(n)},
        },
        st.integers(0, 60),
        st.integers(1, 1024),
        st.sampled_from(["x", "é", "💥", "ﷺ"]),
        st.integers(0, 4096),
        st.integers(0, 260),
    ),
    st.builds(lambda v, d: {"deep": _nest(v, d)}, SCALAR, st.integers(1, 600)),
    st.fixed_dictionaries(
        {"title": TEXT, "summary": st.one_of(TEXT, VALUE)},
        optional={"pages": st.lists(st.dictionaries(KEY, SCALAR, max_size=4), max_size=50)},
    ),
)
TIMES = st.one_of(
    st.none(),
    st.floats(min_value=0, max_value=4e9),
    st.sampled_from([math.inf, -math.inf, math.nan, -1e18, 1e300]),
)
URLS = st.one_of(
    st.sampled_from(
        ["", "https://example.com/", "http://x", "ftp://x", "http://a b", "https://é.example/"]
    ),
    TEXT,
    st.builds(lambda n: "https://e.x/" + "p" * n, st.integers(400, 700)),
)


@st.composite
def records(draw: st.DrawFn) -> WorkflowRecord:
    created = draw(st.floats(min_value=0, max_value=4e9))
    return WorkflowRecord(
        workflow_id=new_workflow_id(),
        command="autointel",
        user_id=draw(st.integers(1, 2**63 - 1)),
        user_name=draw(TEXT),
        options={"url": draw(URLS), "depth": draw(st.sampled_from(["quick", "deep", ""]))},
        status=draw(st.sampled_from(list(WorkflowStatus))),
        created_at=created,
        finished_at=draw(TIMES),
        error=draw(st.one_of(st.just(""), TEXT, HUGE)),
    )


# ---------------------------------------------------------------------------------------------
# The property


def _refusals(emulator: DiscordEmulator, since: int) -> list[tuple[str, str, int | None, Any]]:
    return [
        (r.method, r.path, r.status, r.response)
        for r in emulator.requests[since:]
        if r.status in REFUSED
    ]


@pytest.mark.discord_emulator(
    attachment_size_limit=ATTACHMENT_LIMIT, rate_limits_enabled=False, default_timeout_s=30.0
)
@given(record=records(), result=RESULT)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
async def test_any_result_renders_to_messages_the_emulator_accepts(
    emulator: DiscordEmulator,
    bot: NotifierBot,
    record: WorkflowRecord,
    result: dict[str, Any],
) -> None:
    _, document = encode_for_storage(record, result)  # what the store hands back
    stored = StoredResult(record, document)
    rendered = render_result(stored, attachment_limit_bytes=ATTACHMENT_LIMIT)
    event(f"mode: {rendered.mode}")
    since = len(emulator.requests)

    # 1. The delivery ladder, as the runner sends a result after a restart (channel rung).
    summary = render_result(stored, attachment_limit_bytes=0)
    delivery = Delivery(
        bot.io,
        DeliveryTarget(
            workflow_id=record.workflow_id,
            user_id=record.user_id,
            channel_id=emulator.channel_id,
            ephemeral=False,
            attachment_limit_bytes=ATTACHMENT_LIMIT,
        ),
        None,
    )
    rung = await delivery.deliver(
        OutgoingMessage(
            content=rendered.content or None, embeds=rendered.embeds, files=rendered.files
        ),
        fallback=OutgoingMessage(content=summary.content or None, embeds=summary.embeds),
    )
    assert rung is Rung.CHANNEL
    assert _refusals(emulator, since) == []
    sent = emulator.channel_messages()[-1]
    assert record.workflow_id in sent.content
    assert len(sent.embeds) == len(rendered.embeds)
    assert [a.filename for a in sent.attachments] == [f.filename for f in rendered.files]
    assert all(a.size <= ATTACHMENT_LIMIT for a in sent.attachments)

    # 2. nextcord's own model, as /retrieve_results sends its followup: `Webhook.send` with
    # `Embed.from_dict` and `nextcord.File` (an incoming webhook stands in for the interaction's).
    message = await _webhook(emulator, bot).send(
        content=rendered.content,
        embeds=[nextcord.Embed.from_dict(e) for e in rendered.embeds],
        files=[nextcord.File(io.BytesIO(f.data), filename=f.filename) for f in rendered.files],
        wait=True,
    )
    assert _refusals(emulator, since) == []
    stored = emulator.message(message.id)
    assert len(stored.embeds) == len(rendered.embeds)
    assert len(stored.attachments) == len(rendered.files)


_webhooks: dict[int, nextcord.Webhook] = {}


def _webhook(emulator: DiscordEmulator, bot: NotifierBot) -> nextcord.Webhook:
    """One incoming webhook per emulator, bound to the bot's connection state as
    `interaction.followup` is (same adapter, same HTTP session)."""
    key = id(emulator)
    if key not in _webhooks:
        hook_id, token = emulator.create_incoming_webhook(emulator.channel_id)
        _webhooks[key] = nextcord.Webhook.from_state(
            data={"id": hook_id, "type": 1, "token": token}, state=connection_state(bot)
        )
    return _webhooks[key]
