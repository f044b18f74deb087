"""The helpers every test leans on (`notifier.testing`): what a message shows, polling, the sink."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from notifier.testing import (
    Attachment,
    Author,
    HttpSink,
    Message,
    MessageVersion,
    message_texts,
    text_of,
    wait_until,
)


def _message() -> Message:
    before = MessageVersion(
        content="Working…", embeds=[], attachments=[], components=[], flags=0, edited_at=None
    )
    return Message(
        id=1,
        channel_id=2,
        author=Author(id=3, username="bot"),
        content="Done",
        embeds=[{"title": "Result", "fields": [{"name": "pages", "value": "12"}]}],
        attachments=[Attachment(id=4, filename="result.json", size=11, content=b'{"deep": 1}')],
        history=[before],
    )


def test_text_of_is_what_the_message_shows_now_and_message_texts_every_version() -> None:
    message = _message()
    shown = text_of(message)
    for words in ("Done", "Result", "pages", "12", "result.json", '{"deep": 1}'):
        assert words in shown, words
    assert "Working…" not in shown  # replaced by an edit: nobody reads it any more
    assert [("Working…" in t, "Done" in t) for t in message_texts(message)] == [
        (True, False),
        (False, True),
    ]


async def test_wait_until_takes_sync_and_async_predicates_and_names_what_never_came() -> None:
    polls: list[int] = []

    async def third_time() -> bool:
        polls.append(1)
        return len(polls) >= 3

    await wait_until(third_time, interval_s=0.01)
    await wait_until(lambda: len(polls) == 3)
    with pytest.raises(TimeoutError, match="waiting for the sink to answer"):
        await wait_until(lambda: False, timeout_s=0.05, what="the sink to answer")


async def test_the_sink_answers_its_statuses_holds_and_reopens_on_its_port() -> None:
    async with HttpSink() as sink, aiohttp.ClientSession() as http:

        async def post(path: str) -> int:
            async with http.post(sink.url(path), json={"title": path}) as response:
                return response.status

        sink.statuses.extend([503, (429, {"retry_after": 1})])
        assert [await post("/a"), await post("/b"), await post("/c")] == [503, 429, 200]
        assert [r.status for r in sink.received] == [503, 429, 200]
        assert sink.titles() == ["/c"]  # only what was answered 2xx counts as delivered

        sink.holding = True
        held = asyncio.create_task(post("/held"))
        await wait_until(lambda: sink.held == 1)
        assert not held.done()
        sink.release()
        assert await held == 200

        sink.holding = True
        stuck = asyncio.create_task(post("/stuck"))
        await wait_until(lambda: sink.held == 1)
        port = sink.port
        await sink.close()  # its sender never hears back
        await asyncio.gather(stuck, return_exceptions=True)
        assert sink.received[-1].path == "/stuck" and sink.received[-1].status is None
        with pytest.raises(aiohttp.ClientConnectionError):
            await post("/down")

        sink.holding = False
        await sink.start()
        assert sink.port == port
        assert await post("/back") == 200
