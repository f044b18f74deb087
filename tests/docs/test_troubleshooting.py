"""README "Troubleshooting": each Discord error in the table is provoked for real against the
emulator, through the bot's own HTTP client; the exception reads as the README shows it, its code
is a named constant in notifier/discord/codes.py, and `notifier.discord.session.classify` sorts it the way
the table's last column says the bot reacts."""

from __future__ import annotations

import re
from collections.abc import Iterator

import aiohttp
import nextcord
import pytest
from loguru import logger

from notifier.app import NotifierBot
from notifier.discord import codes as discord_codes
from notifier.discord.compat import Route, live_session
from notifier.discord.io import OutgoingMessage
from notifier.discord.session import FailureKind, classify
from notifier.testing import DiscordEmulator, wait_until

from .readme import table

CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"

# How the bot reacts, per the table's last column -> the classification that makes it so.
EXPECTED_KIND = {
    discord_codes.INVALID_WEBHOOK_TOKEN: FailureKind.TOKEN_EXPIRED,  # never used again
    discord_codes.UNKNOWN_INTERACTION: FailureKind.TOKEN_EXPIRED,
    discord_codes.CANNOT_DM_USER: FailureKind.PERMANENT,  # that rung is done; the store keeps it
    discord_codes.MISSING_PERMISSIONS: FailureKind.PERMANENT,  # next rung (DM)
}


def rows() -> dict[str, list[str]]:
    return {row[0]: row for row in table("Troubleshooting")}


def readme_pattern(code: int) -> re.Pattern[str]:
    """The README's "you see" cell for `code`, with `...` matching anything."""
    (cell,) = [c for c in rows() if f"error code: {code})" in c]
    text = cell.strip("`")
    return re.compile(".*".join(re.escape(part) for part in text.split("...")))


def test_every_code_in_the_table_is_a_named_constant_and_has_a_test() -> None:
    codes = {int(c) for cell in rows() for c in re.findall(r"error code: (\d+)\)", cell)}
    named = {v for k, v in vars(discord_codes).items() if k.isupper() and isinstance(v, int)}
    assert codes <= named
    assert codes == set(EXPECTED_KIND)
    assert any("Session is closed" in cell for cell in rows())
    assert any(cell.startswith("`config.yaml:LINE: FIELD:") for cell in rows())  # test_readme_bot


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)


async def _raised(call: object) -> BaseException:
    try:
        await call  # type: ignore[misc]
    except BaseException as exc:
        return exc
    raise AssertionError("the call did not fail")


def _check(exc: BaseException, code: int) -> None:
    assert isinstance(exc, nextcord.HTTPException), exc
    assert exc.code == code
    assert readme_pattern(code).fullmatch(str(exc)), str(exc)
    assert classify(exc) is EXPECTED_KIND[code]


async def test_50027_a_call_with_an_expired_interaction_token(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    handle = await emulator.trigger_command(
        "workflow", {"workflow_id": "0" * 32}, subcommand="status", user="alice"
    )
    await handle.wait_for_message(timeout_s=10)
    handle.expire()  # 15 minutes later
    exc = await _raised(bot.io.followup(handle.token, OutgoingMessage(content="too late")))
    _check(exc, discord_codes.INVALID_WEBHOOK_TOKEN)
    assert [r.status for r in emulator.requests if r.error_code == 50027] == [401]


async def test_10062_the_first_answer_came_later_than_3_seconds(
    emulator: DiscordEmulator, bot: NotifierBot, log_lines: list[str]
) -> None:
    # The bot's acknowledgement is held up (a stalled event loop, a slow network) while Discord's
    # clock passes the 3 s deadline.
    emulator.inject_fault("POST", "/interactions/*", "hang", delay_s=0.5)
    handle = await emulator.trigger_command(
        "workflow", {"workflow_id": "0" * 32}, subcommand="status", user="alice"
    )
    emulator.advance_time(discord_codes.INITIAL_RESPONSE_DEADLINE_S + 1)
    await wait_until(
        lambda: any("initial response failed: 404 (code 10062)" in line for line in log_lines),
        what="the bot's acknowledgement refused with 10062 (retried once, then given up)",
    )
    refused = [r for r in emulator.requests if r.error_code == 10062]
    assert len(refused) == 2  # the first try and exactly one retry, never a loop
    route = Route("POST", CALLBACK, interaction_id=handle.id, interaction_token=handle.token)
    exc = await _raised(bot.http.request(route, json={"type": 5}))
    _check(exc, discord_codes.UNKNOWN_INTERACTION)


async def test_50007_the_user_does_not_accept_dms(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    emulator.close_dms("alice")
    channel_id = await bot.io.dm_channel(emulator.users["alice"].id)
    exc = await _raised(bot.io.channel_send(channel_id, OutgoingMessage(content="hi"), nonce="n1"))
    _check(exc, discord_codes.CANNOT_DM_USER)


async def test_50013_the_bot_may_not_post_in_the_channel(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    emulator.forbid_channel(emulator.channel_id)
    message = OutgoingMessage(content="hi")
    exc = await _raised(bot.io.channel_send(emulator.channel_id, message, nonce="n2"))
    _check(exc, discord_codes.MISSING_PERMISSIONS)


async def test_session_is_closed_is_classified_and_the_bots_calls_survive_it(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    stale = aiohttp.ClientSession()
    await stale.close()  # what an Interaction holding the client's old session meets
    exc = await _raised(stale.get(emulator.api_base + "/gateway"))
    assert isinstance(exc, RuntimeError)
    assert str(exc) == "Session is closed"
    assert classify(exc) is FailureKind.SESSION_CLOSED

    # "handled: calls use the client's current session": the bot's own session closes (as on a
    # client restart), and its next call still goes through.
    await live_session(bot).close()
    sent = await bot.io.channel_send(
        emulator.channel_id, OutgoingMessage(content="still here"), nonce="n3"
    )
    assert emulator.message(sent).content == "still here"
