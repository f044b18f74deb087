"""E-mail notices, verified: the code goes through a real SMTP server (aiosmtpd), five wrong codes
kill it, the right one stores the address with the choices asked for (a restart in between
included), the daily limits hold across users, an address the server refuses (550) turns e-mail
off and tells the user, and no address the server quotes reaches a log line."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.config import StorageSettings
from notifier.events import Event, Notice
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxRow, OutboxStatus
from notifier.fanout.plugin import PluginContext
from notifier.store.user_settings import UserSettingsStore, open_user_settings
from notifier.testing import wait_until
from notifier.testing.smtp import SmtpServer
from notifier.usernotify import MailServer, UserNotifications

from .conftest import DMs, make_settings

ALICE, BOB = 111, 222
ADDRESS = "alice@example.com"


def service(
    tmp_path: Path, smtp: SmtpServer, users: UserSettingsStore, context: PluginContext, **kw: object
) -> UserNotifications:
    return UserNotifications(make_settings(tmp_path, smtp, **kw), users, context)


async def test_the_code_arrives_and_the_right_code_stores_the_address(
    tmp_path: Path, smtp: SmtpServer, users: UserSettingsStore, context: PluginContext
) -> None:
    notify = service(tmp_path, smtp, users, context)
    reply = await notify.set_email(ALICE, ADDRESS, ["completed"], None)
    assert "a***@example.com" in reply and "/notify verify" in reply
    assert "email" not in (await users.get(ALICE)).channels  # not before the code comes back
    [mail] = smtp.mailbox.to(ADDRESS)
    assert mail["From"] == "bot@example.com"

    reply = await notify.verify(ALICE, smtp.mailbox.code_for(ADDRESS))
    assert reply.startswith("Verified. E-mail notices go to a***@example.com for completed")
    channel = (await users.get(ALICE)).channels["email"]
    assert (channel.target, channel.events, channel.enabled) == (ADDRESS, ("completed",), True)
    assert "a***@example.com: on" in await notify.show(ALICE)
    assert ADDRESS not in await notify.show(ALICE)


async def test_the_choices_asked_with_the_address_outlive_a_restart_before_verify(
    tmp_path: Path,
    smtp: SmtpServer,
    context: PluginContext,
    storage_on_each_backend: StorageSettings,
) -> None:
    settings = make_settings(tmp_path, smtp)
    before = await open_user_settings(storage_on_each_backend)
    try:
        notify = UserNotifications(settings, before, context)
        asked = await notify.set_email(ALICE, ADDRESS, ["completed"], ["autointel"])
        await notify.close()
    finally:
        await before.close()
    assert "on its way" in asked

    after = await open_user_settings(storage_on_each_backend)  # the bot started again
    try:
        notify = UserNotifications(settings, after, context)
        reply = await notify.verify(ALICE, smtp.mailbox.code_for(ADDRESS))
        channel = (await after.get(ALICE)).channels["email"]
        await notify.close()
    finally:
        await after.close()

    assert reply == (
        "Verified. E-mail notices go to a***@example.com for completed of only autointel. "
        "Try them with /notify test."
    )
    assert (channel.target, channel.events, channel.workflows) == (
        ADDRESS,
        ("completed",),
        ("autointel",),
    )


async def test_five_wrong_codes_kill_the_code(
    tmp_path: Path, smtp: SmtpServer, users: UserSettingsStore, context: PluginContext
) -> None:
    notify = service(tmp_path, smtp, users, context)
    await notify.set_email(ALICE, ADDRESS, None, None)
    right = smtp.mailbox.code_for(ADDRESS)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    replies = [await notify.verify(ALICE, wrong) for _ in range(5)]
    assert replies[0] == "That code is wrong; 4 more tries before this code stops working."
    assert "5th wrong code" in replies[4] and "ask for a new code" in replies[4]
    assert (await notify.verify(ALICE, right)).startswith("No code is waiting for you")
    assert "email" not in (await users.get(ALICE)).channels


async def test_limits_hold_across_users_and_the_sixth_code_is_refused_in_words(
    tmp_path: Path,
    smtp: SmtpServer,
    users_on_each_backend: UserSettingsStore,
    context: PluginContext,
) -> None:
    notify = service(tmp_path, smtp, users_on_each_backend, context)
    for user in (1, 2, 3, 4):
        assert "on its way" in await notify.set_email(user, "target@example.com", None, None)
    # One user, three codes (to any address) in a day; the fourth is refused.
    for address in ("target@example.com", "one@example.com"):
        assert "on its way" in await notify.set_email(5, address, None, None)
    assert "on its way" in await notify.set_email(5, "two@example.com", None, None)
    refused = await notify.set_email(5, "three@example.com", None, None)
    assert refused.startswith("No code was sent: you have asked for 3 codes today")
    assert "3 codes per user per day" in refused
    # The address got five codes from five users: a sixth user is refused.
    sixth = await notify.set_email(6, "TARGET@example.com", None, None)
    assert sixth.startswith("No code was sent: T***@example.com has been sent 5 codes today")
    assert "5 codes per address per day" in sixth
    assert len(smtp.mailbox.to("target@example.com")) == 5
    assert smtp.mailbox.to("three@example.com") == []


async def test_an_address_the_server_refuses_gets_no_code(
    tmp_path: Path, smtp: SmtpServer, users: UserSettingsStore, context: PluginContext
) -> None:
    smtp.mailbox.refused.add(ADDRESS)
    notify = service(tmp_path, smtp, users, context)
    reply = await notify.set_email(ALICE, ADDRESS, None, None)
    assert reply.startswith("No code is waiting: the mail server refused the address (550")
    assert await users.pending_code(ALICE) is None


async def verified(notify: UserNotifications, smtp: SmtpServer, user_id: int) -> None:
    await notify.set_email(user_id, ADDRESS, None, None)
    assert (await notify.verify(user_id, smtp.mailbox.code_for(ADDRESS))).startswith("Verified")


def completed(user_id: int) -> Notice:
    return Notice(
        event=Event.COMPLETED,
        workflow_id="wf-mail-1",
        user_id=user_id,
        user_name="alice",
        command="autointel",
        summary="3 pages analysed",
    )


async def failed_for_good(fanout: Fanout) -> OutboxRow:
    """The outbox's one row, once it failed for good."""

    async def failed() -> bool:
        rows = await fanout.outbox.rows(limit=None)
        return bool(rows) and rows[0].status is OutboxStatus.FAILED

    await wait_until(failed, what="the row failed for good")
    [row] = await fanout.outbox.rows(limit=None)
    return row


async def test_the_next_completed_workflow_mails_the_user_once(
    tmp_path: Path, smtp: SmtpServer, users: UserSettingsStore, context: PluginContext
) -> None:
    settings = make_settings(tmp_path, smtp)
    notify = UserNotifications(settings, users, context)
    await verified(notify, smtp, ALICE)
    fanout = await Fanout.open(settings, context, users=notify.routes)
    try:
        await fanout.emit(completed(ALICE))
        await wait_until(lambda: len(smtp.mailbox.to(ADDRESS)) == 2, what="the notice mail")
        await fanout.drain(5)
        [row] = await fanout.outbox.rows(limit=None)
        assert (row.notifier, row.status) == ("user:email", OutboxStatus.SENT)
    finally:
        await fanout.close()
        await notify.close()
    mail = smtp.mailbox.to(ADDRESS)[-1]
    assert mail["Subject"] == "Your autointel workflow finished"
    assert "/retrieve_results workflow_id:wf-mail-1" in mail.get_content()
    assert mail["Message-ID"] == f"<{row.idempotency_key}@example.com>"


@pytest.mark.parametrize("dm_open", [True, False], ids=["told-by-dm", "note-for-later"])
async def test_a_550_turns_email_off_and_tells_the_user(
    tmp_path: Path,
    smtp: SmtpServer,
    users: UserSettingsStore,
    context: PluginContext,
    dms: DMs,
    dm_open: bool,
) -> None:
    settings = make_settings(tmp_path, smtp)
    notify = UserNotifications(settings, users, context)
    await verified(notify, smtp, ALICE)
    smtp.mailbox.refused.add(ADDRESS)  # the mailbox went away after it was verified
    if not dm_open:
        dms.closed.add(ALICE)
    fanout = await Fanout.open(settings, context, users=notify.routes)
    try:
        await fanout.emit(completed(ALICE))
        row = await failed_for_good(fanout)
        assert row.attempts == 1  # permanent: not retried
        assert ADDRESS not in (row.last_error or "")
    finally:
        await fanout.close()
        await notify.close()
    channel = (await users.get(ALICE)).channels["email"]
    assert not channel.enabled and "refused a***@example.com (550)" in channel.disabled_reason
    assert "a***@example.com: off (the mail server refused" in await notify.show(ALICE)
    told = [text for text in dms.to(ALICE) if text.startswith("E-mail notices are off")]
    notes = await notify.take_notes(ALICE)
    if dm_open:
        assert len(told) == 1 and notes == []
    else:
        assert told == [] and len(notes) == 1
        assert notes[0].startswith("E-mail notices are off: the mail server refused the address")


@pytest.mark.parametrize(
    ("typed", "reply"),
    [
        ("", "target: the address is empty"),
        ("alice.example.com", "target: the address must have exactly one @"),
        ("a@b@example.com", "target: the address must have exactly one @"),
        ("alice smith@example.com", "target: the part before the @ may hold letters"),
        ("alice@localhost", "target: the domain 'localhost' is not a mail domain"),
        ("alice@[127.0.0.1]", "target: the domain '[127.0.0.1]' is not a mail domain"),
        (".alice@example.com", "target: the part before the @ cannot start or end with a dot"),
    ],
)
async def test_a_bad_address_is_refused_in_words_and_mails_nothing(
    tmp_path: Path,
    smtp: SmtpServer,
    users: UserSettingsStore,
    context: PluginContext,
    typed: str,
    reply: str,
) -> None:
    notify = service(tmp_path, smtp, users, context)
    assert (await notify.set_email(ALICE, typed, None, None)).startswith(reply)
    assert smtp.mailbox.messages == []


@pytest.mark.parametrize(
    ("url", "host", "port", "mode", "user", "sender"),
    [
        (
            "mailtos://bot:s3cret@smtp.example.com:2525?from=Bot%20<bot@example.com>&mode=starttls",
            "smtp.example.com",
            2525,
            "starttls",
            "bot",
            "Bot <bot@example.com>",
        ),
        (
            "mailto://user:s3cret@gmail.com",
            "smtp.gmail.com",
            587,
            "starttls",
            "user@gmail.com",
            "user@gmail.com",
        ),
        (
            "mailtos://me:s3cret@example.com?mode=ssl",
            "example.com",
            465,
            "ssl",
            "me",
            "me@example.com",
        ),
        (
            "mailto://127.0.0.1:2525?from=bot@example.com",
            "127.0.0.1",
            2525,
            "insecure",
            None,
            "bot@example.com",
        ),
    ],
)
def test_the_operators_mailto_url_is_read_as_apprise_reads_it(
    url: str, host: str, port: int, mode: str, user: str | None, sender: str
) -> None:
    server = MailServer.from_url(url)
    assert (server.host, server.port, server.secure_mode, server.user) == (host, port, mode, user)
    assert server.from_address == sender
    assert "s3cret" not in repr(server)


MIXED_CASE = "Alice.Smith@example.com"


@pytest.mark.parametrize(
    "quoted",
    [MIXED_CASE, MIXED_CASE.lower(), "alice.smith@mailhost"],
    ids=["as-sent", "server-lowercased", "alias-mailbox"],
)
async def test_no_address_the_server_quotes_reaches_a_log_line(
    tmp_path: Path,
    smtp: SmtpServer,
    users: UserSettingsStore,
    context: PluginContext,
    dms: DMs,
    log_lines: list[str],
    quoted: str,
) -> None:
    settings = make_settings(tmp_path, smtp)
    notify = UserNotifications(settings, users, context)
    await notify.set_email(ALICE, MIXED_CASE, None, None)
    assert (await notify.verify(ALICE, smtp.mailbox.code_for(MIXED_CASE))).startswith("Verified")
    # The mailbox went away; the server says so, quoting an address in its own spelling.
    smtp.mailbox.refused.add(MIXED_CASE)
    smtp.mailbox.refusal = f"550 5.1.1 <{quoted}>: Recipient address rejected: User unknown"
    fanout = await Fanout.open(settings, context, users=notify.routes)
    try:
        await fanout.emit(completed(ALICE))
        row = await failed_for_good(fanout)
        # A server that only defers (4xx) while Bob asks for a code there: logged as a warning.
        smtp.mailbox.refusal = f"450 4.2.1 <{quoted}>: Recipient address rejected: try later"
        deferred = await notify.set_email(BOB, MIXED_CASE, None, None)
    finally:
        await fanout.close()
        await notify.close()

    assert deferred.startswith("The code could not be sent to A***@example.com right now")
    logged = "\n".join(log_lines).lower()
    assert "notices turned off (the mail server refused a***@example.com (550))" in logged
    assert "verification code to a***@example.com not sent" in logged
    assert "recipient address rejected" in logged  # the server's words, its address masked
    assert "alice.smith@" not in logged
    assert "alice.smith@" not in (row.last_error or "").lower()
    # The user is told in the server's words: the address is their own.
    [told] = [text for text in dms.to(ALICE) if text.startswith("E-mail notices are off")]
    assert "Recipient address rejected: User unknown" in told
