"""Issue 19 with the running bot: `/notify` against the emulator, real SMTP (aiosmtpd), the CLI
and bot.py as a process killed with -9.

`/notify` is there only when `user_notifications.enabled`; a DM chosen with it arrives once per
completed workflow; an e-mail address is stored only after its mailed code comes back, and is
then mailed once per completed workflow, and also when the channel and the DMs are closed (the
result is persisted, the mail gives the `/retrieve_results` command that shows it);
`/notify forget` leaves nothing that names the user (the CLI's `users show` says so); the notes
the bot owes a user follow their next command, never into a public "thinking..." message; what
a user set, a pending code and a queued callback survive kill -9 of the bot; and in the
distributed mode the worker that runs a workflow sends the DM its user chose on the gateway.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from standardwebhooks import Webhook

from notifier.app import NotifierBot
from notifier.fanout.outbox import OutboxStatus
from notifier.records import DeliveryState, WorkflowStatus
from notifier.testing import (
    BotProcess,
    DiscordEmulator,
    HttpSink,
    bot_process,
    child_env,
    text_of,
    wait_until,
)
from notifier.testing.model import Message
from notifier.testing.processes import run_cli, write_bot_config
from notifier.testing.project_bot import (
    PROJECT_ROOT,
    SteeredWorkflow,
    new_record,
    project_bot,
    settled_record,
    settled_rows,
)
from notifier.testing.site import DemoSite
from notifier.testing.smtp import SmtpServer, body_of, serve_smtp
from notifier.testing.workflow_sources import STEPPER

from .support import run_steered

ALICE_MAIL = "alice@example.com"
# A limit that only stops a broken run from hanging the suite; nothing here measures speed.
STEP_LIMIT_S = 60.0


# ---------------------------------------------------------------------------------------------
# Real SMTP


def mail_config(smtp: SmtpServer) -> dict[str, Any]:
    """config.yaml overrides: an operator `email` notifier on this server (for storage errors
    only), named as the users' mail server."""
    return {
        "notifiers": [
            {
                "name": "ops-mail",
                "plugin": "email",
                "on": ["storage_error"],
                "options": {"urls": [smtp.url()]},
            }
        ],
        "user_notifications": {"email_notifier": "ops-mail"},
    }


async def mailed_code(smtp: SmtpServer, address: str) -> str:
    """The 6-digit code of the latest mail to `address`, once one arrived."""
    await wait_until(lambda: smtp.mailbox.to(address), what=f"a code mailed to {address}")
    return smtp.mailbox.code_for(address)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with serve_smtp() as server:
        yield server


# ---------------------------------------------------------------------------------------------
# Helpers


async def notify(
    emulator: DiscordEmulator,
    subcommand: str,
    options: Mapping[str, object] | None = None,
    *,
    user: str = "alice",
) -> Message:
    """Run ``/notify <subcommand>`` as `user`; its private answer (the first visible message)."""
    handle = await emulator.trigger_command(
        "notify", dict(options or {}), subcommand=subcommand, user=user
    )
    answer = await handle.wait_for_message(lambda m: bool(m.content), timeout_s=STEP_LIMIT_S)
    assert answer.ephemeral, answer.content
    return answer


async def verify_email(
    emulator: DiscordEmulator, smtp: SmtpServer, address: str = ALICE_MAIL
) -> str:
    """``/notify set via:email`` then ``/notify verify`` with the code that was mailed; the
    verify answer."""
    sent = await notify(emulator, "set", {"via": "email", "target": address})
    assert "a***@example.com" in sent.content, sent.content
    assert address not in sent.content
    code = await mailed_code(smtp, address)
    verified = await notify(emulator, "verify", {"code": code})
    return verified.content


# ---------------------------------------------------------------------------------------------
# The command is there only when enabled


@pytest.mark.notifier_config({"user_notifications": {"enabled": False}})
async def test_notify_is_absent_when_user_notifications_are_disabled(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    names = {c.name for c in emulator.commands}
    assert "retrieve_results" in names
    assert "notify" not in names
    assert not (bot.settings.storage.path / "users.sqlite3").exists()  # nothing of it opened


async def test_notify_is_there_when_enabled_offering_only_what_can_be_served(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    command = emulator.command_named("notify")
    subcommands = {o["name"]: o for o in command.options}
    assert set(subcommands) == {"set", "verify", "show", "test", "off", "forget", "secret"}
    via = next(o for o in subcommands["set"]["options"] if o["name"] == "via")
    # No email_notifier configured: no mail server, so e-mail is not among the choices.
    assert [c["value"] for c in via["choices"]] == ["dm", "webhook"]
    with pytest.raises(ValueError, match="must be one of"):
        await emulator.trigger_command(
            "notify", {"via": "email", "target": ALICE_MAIL}, subcommand="set"
        )
    answer = await notify(emulator, "show")
    assert "no notice channels" in answer.content


# ---------------------------------------------------------------------------------------------
# DM


async def test_a_user_who_chose_a_dm_gets_one_per_completed_workflow(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    answer = await notify(emulator, "set", {"via": "dm"})
    assert "DM notices are on" in answer.content
    record = await run_steered(emulator, bot)
    assert record.delivered_via == "interaction"  # the result itself needed no DM

    dm = await emulator.wait_for_dm(
        "alice", lambda m: record.workflow_id in text_of(m), timeout_s=STEP_LIMIT_S
    )
    (row,) = await settled_rows(bot, "user:dm", 1)
    assert [m.id for m in emulator.dm_messages("alice")] == [dm.id]
    assert emulator.dm_messages("bob") == []
    assert row.status is OutboxStatus.SENT


# ---------------------------------------------------------------------------------------------
# E-mail, end to end through a real SMTP server


async def test_a_verified_address_is_mailed_once_per_completed_workflow(
    emulator: DiscordEmulator, tmp_path: Path, smtp: SmtpServer
) -> None:
    async with project_bot(emulator, tmp_path / "data", mail_config(smtp)) as bot:
        # Before the code comes back nothing is stored as an address.
        sent = await notify(emulator, "set", {"via": "email", "target": ALICE_MAIL})
        assert "code" in sent.content
        wrong = await notify(emulator, "verify", {"code": "000000"})
        assert "Verified" not in wrong.content
        assert "email" not in (await bot.notifier.user_settings.get(alice(emulator))).channels

        code = await mailed_code(smtp, ALICE_MAIL)
        verified = await notify(emulator, "verify", {"code": code})
        assert "Verified" in verified.content, verified.content
        stored = (await bot.notifier.user_settings.get(alice(emulator))).channels["email"]
        assert stored.target == ALICE_MAIL

        mails_before = len(smtp.mailbox.to(ALICE_MAIL))  # the code
        record = await run_steered(emulator, bot)
        await settled_rows(bot, "user:email", 1)

    notices = smtp.mailbox.to(ALICE_MAIL)[mails_before:]
    assert len(notices) == 1, [m["Subject"] for m in notices]
    assert record.workflow_id in body_of(notices[0])
    assert smtp.mailbox.to("ops@example.com") == []  # the operator's notifier heard nothing


def alice(emulator: DiscordEmulator) -> int:
    return emulator.users["alice"].id


@pytest.mark.discord_emulator(interaction_ttl_s=4.0)
async def test_with_channel_and_dms_closed_a_verified_user_is_mailed_the_retrieval_command(
    emulator: DiscordEmulator, tmp_path: Path, smtp: SmtpServer
) -> None:
    """The issue's acceptance: the result is persisted, the mail says how to get it, and
    `/retrieve_results` gives it."""
    async with project_bot(emulator, tmp_path / "data", mail_config(smtp)) as bot:
        assert "Verified" in await verify_email(emulator, smtp)
        emulator.forbid_channel(emulator.channel_id)  # 403/50013
        emulator.close_dms("alice")  # 403/50007
        # It outlasts the token: the bot hands off while it lives, then the token dies.
        record = await run_steered(emulator, bot, outlast_token=True)
        assert record.status is WorkflowStatus.COMPLETED
        assert record.delivery_state is DeliveryState.UNDELIVERABLE

        retrieval = f"/retrieve_results workflow_id:{record.workflow_id}"
        await wait_until(
            lambda: [m for m in smtp.mailbox.to(ALICE_MAIL) if retrieval in body_of(m)],
            what="the mail with the retrieval command",
        )

        asked = await emulator.trigger_command(
            "retrieve_results", {"workflow_id": record.workflow_id}, user="alice"
        )
        shown = await asked.wait_for_message(
            lambda m: "Steered result" in text_of(m), timeout_s=STEP_LIMIT_S
        )
    assert record.workflow_id in text_of(shown)


# ---------------------------------------------------------------------------------------------
# Forget, confirmed by the CLI


async def test_forget_leaves_nothing_naming_the_user_and_the_cli_confirms(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    overrides = {
        "notifiers": [
            {"name": "ops", "plugin": "dm", "on": ["completed"], "options": {"to_requester": True}}
        ]
    }
    async with project_bot(emulator, data, overrides) as bot:
        await notify(emulator, "set", {"via": "dm"})
        secret_answer = await notify(emulator, "secret rotate")
        assert "whsec_" in secret_answer.content
        await run_steered(emulator, bot)
        await settled_rows(bot, "user:dm", 1)
        named = [r for r in await bot.fanout.outbox.rows(limit=None) if r.notice.user_id]
        assert {r.notifier for r in named} == {"ops", "user:dm"}

        forgot = await notify(emulator, "forget")
        assert "Deleted everything stored about your notifications" in forgot.content
        assert "Your workflow results are kept until retention" in forgot.content
        assert "channels (1)" in forgot.content
        assert "queued notices (2)" in forgot.content
        remaining = await bot.fanout.outbox.rows(limit=None)
        assert [r for r in remaining if r.notice.user_id == alice(emulator)] == []

        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"storage": {"path": str(data)}}), encoding="utf-8")
        shown = await run_cli(config, "users", "show", str(alice(emulator)))
        as_json = await run_cli(config, "users", "show", str(alice(emulator)), "--json")
    assert shown.returncode == 0, shown.stderr
    assert as_json.returncode == 0, as_json.stderr
    assert shown.stdout.strip() == f"nothing is stored about user {alice(emulator)}"
    exported = json.loads(as_json.stdout)
    assert exported["channels"] == [] and exported["webhook_secret"] is None
    assert exported["notes"] == [] and exported["pending_code"] is None


# ---------------------------------------------------------------------------------------------
# Notes owed to a user follow their next command


async def test_a_closed_dm_turns_dm_notices_off_and_the_next_command_says_so_once(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    await notify(emulator, "set", {"via": "dm"})
    emulator.close_dms("alice")  # 403/50007
    record = await run_steered(emulator, bot)
    assert record.delivered_via == "interaction"
    (row,) = await settled_rows(bot, "user:dm", 1)
    assert row.status is OutboxStatus.FAILED

    # Bob's next command shows him nothing of alice's; alice's shows her answer, then the note.
    bobs = await emulator.trigger_command("notify", {}, subcommand="show", user="bob")
    await bobs.wait_for_message(lambda m: bool(m.content))
    alices = await emulator.trigger_command("notify", {}, subcommand="show", user="alice")
    answer = await alices.wait_for_message(lambda m: "notice channels" in m.content)
    assert "DM: off" in answer.content
    note = await alices.wait_for_message(lambda m: "DM notices are off" in m.content)
    assert note.ephemeral and note.id != answer.id  # a follow-up of its own, after the answer
    assert not [m for m in bobs.messages if "DM notices are off" in m.content]
    # Shown once: the next command has no note.
    again = await emulator.trigger_command("notify", {}, subcommand="show", user="alice")
    await again.wait_for_message(lambda m: "notice channels" in m.content)
    assert await bot.notifier.user_settings.take_notes(alice(emulator)) == []
    assert not [m for m in again.messages if "DM notices are off" in m.content]


async def test_a_note_waits_while_a_public_answer_is_still_thinking(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    """A follow-up now would fill the public "thinking..." message of /autointel with a private
    note: the note goes back to the store and comes with the next command instead."""
    owed = "Your webhook kept failing, so callbacks are off."
    await bot.notifier.user_settings.add_note(alice(emulator), owed, now=1.0)
    # The workflow's first edit of its original message is held a while: it stays "thinking...".
    # (Held, not lost: the workflow's own messages go on afterwards.)
    emulator.inject_fault("PATCH", "/webhooks/*/*/messages/*", "hang", count=1, delay_s=6.0)
    steered = SteeredWorkflow()
    steered.install(bot)
    started = await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")
    await steered.started.wait()
    record = await new_record(bot)
    original_route = "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"

    async def looked_and_kept() -> bool:
        looked = emulator.requests_to("GET", original_route)
        exported = await bot.notifier.user_settings.export(alice(emulator))
        return bool(looked) and [n["text"] for n in exported["notes"]] == [owed]

    await wait_until(looked_and_kept, what="the note looked at and kept")

    later = await emulator.trigger_command("notify", {}, subcommand="show", user="alice")
    note = await later.wait_for_message(lambda m: owed in m.content)
    assert note.ephemeral
    steered.release.set()
    await started.wait_for_message(lambda m: "Steered result" in text_of(m), timeout_s=30)
    await settled_record(bot, record.workflow_id)
    assert not [m for m in started.messages if owed in text_of(m)]


# ---------------------------------------------------------------------------------------------
# kill -9


async def test_settings_a_pending_code_and_a_queued_callback_survive_kill_9(
    discord_emulator: DiscordEmulator, tmp_path: Path, smtp: SmtpServer
) -> None:
    emulator = discord_emulator
    commands = ("autointel", "retrieve_results", "notify")
    async with HttpSink() as receiver, DemoSite(pages=6) as site:
        config = write_bot_config(tmp_path, emulator, mail_config(smtp))

        # 1. Settings, a code on its way and a callback the receiver holds; then kill -9.
        async with bot_process(config, emulator, commands=commands) as first:
            await notify(emulator, "set", {"via": "dm", "events": "failed"})
            hook = await notify(
                emulator, "set", {"via": "webhook", "target": receiver.url("/hook")}
            )
            secret = re.search(r"whsec_[A-Za-z0-9+/=]+", hook.content)
            assert secret, hook.content
            await notify(emulator, "set", {"via": "email", "target": ALICE_MAIL})
            code = await mailed_code(smtp, ALICE_MAIL)

            receiver.holding = True
            await emulator.trigger_command(
                "autointel", {"url": site.url, "depth": "quick"}, user="alice"
            )
            await first.wait_until(lambda: receiver.held >= 1, what="the callback held")
            await first.kill_9()

        held = [r for r in receiver.received if r.path == "/hook"]
        assert held and all(r.status is None for r in held)  # none was answered
        first_id = held[0].headers["webhook-id"]

        # 2. A new process: the callback is sent again (same webhook-id), the settings and the
        # pending code are all there.
        receiver.holding = False
        async with bot_process(config, emulator, commands=commands) as second:
            await second.wait_until(
                lambda: [r for r in receiver.received if r.ok and r.path == "/hook"],
                what="the owed callback delivered",
            )
            verified = await notify(emulator, "verify", {"code": code})
            shown = await notify(emulator, "show")
            await second.stop()

    delivered = [r for r in receiver.received if r.ok and r.path == "/hook"]
    assert {r.headers["webhook-id"] for r in delivered} == {first_id}
    payload = Webhook(secret.group(0)).verify(delivered[0].raw, dict(delivered[0].headers))
    assert payload["event"] == "completed"
    assert "Verified" in verified.content, verified.content
    assert "DM" in shown.content and "for failed" in shown.content
    assert "Webhook" in shown.content and "E-mail to a***@example.com: on" in shown.content


# ---------------------------------------------------------------------------------------------
# The distributed mode: a worker delivers the users' own notices too


async def test_a_worker_sends_the_dm_a_user_chose_on_the_gateway(
    discord_emulator: DiscordEmulator, postgres_dsn: str, tmp_path: Path
) -> None:
    emulator = discord_emulator
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "stepper.py").write_text(STEPPER, encoding="utf-8")
    storage = {"backend": "postgres", "postgres_dsn": postgres_dsn, "path": str(tmp_path / "data")}
    extra = {
        "storage": storage,
        "workflows": {"dirs": [str(tmp_path / "workflows")]},
        "distributed": {"fetch_polling": 0.2},
        "logging": {"level": "INFO"},
    }
    config = str(write_bot_config(tmp_path, emulator, extra))
    env = child_env(TEST_BOT_TOKEN=emulator.bot_token)

    def process(*args: str) -> Any:
        return BotProcess.running(
            sys.executable,
            "-m",
            "notifier",
            *args,
            cwd=PROJECT_ROOT,
            env=env,
            token=emulator.bot_token,
        )

    async with process("run", "--role", "gateway", "--config", config) as gateway:
        await emulator.wait_for_commands("stepper", "notify", timeout_s=STEP_LIMIT_S)
        async with process("worker", "--config", config) as worker:
            await worker.wait_until(lambda: worker.stderr_has("taking workflow jobs"), what="ready")
            answer = await notify(emulator, "set", {"via": "dm"})
            assert "DM notices are on" in answer.content
            handle = await emulator.trigger_command("stepper", {"steps": 2}, user="alice")
            result = await handle.wait_for_message(
                lambda m: "completed" in text_of(m), timeout_s=STEP_LIMIT_S
            )
            found = re.search(r"[0-9a-f]{32}", text_of(result))
            assert found, text_of(result)
            dm = await emulator.wait_for_dm(
                "alice", lambda m: found.group(0) in text_of(m), timeout_s=STEP_LIMIT_S
            )
            await worker.stop()
        await gateway.stop()
    assert [m.id for m in emulator.dm_messages("alice")] == [dm.id]
