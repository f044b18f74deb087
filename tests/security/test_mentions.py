"""Text from pages and users can never ping anyone nor hide a link (issue 15, item 6).

A crawled page's title and text reach Discord in a result's embeds, in progress and error messages,
and in every notifier's notice (the default `completed` template holds `{summary}`). Written by an
attacker, they hold `@everyone`, `<@&role>`, `<@user>` and masked links such as
`[verify](https://evil...)`. The table pins `inert`, the one function all of them go through; the
run with the real bot sends such a result and such an error through every place a message leaves
the bot (the interaction, the channel and DM rungs, a command reply, native and Apprise webhooks
with and without embeds, a DM notifier, a JSON sink) and reads what the emulator received.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from notifier.app import NotifierBot
from notifier.discord.text import ZERO_WIDTH_SPACE, allowed_mentions, inert
from notifier.events import Event, Notice
from notifier.fanout.outbox import OutboxStatus
from notifier.fanout.templates import notice_field_names
from notifier.plugins import MessageTemplate, RenderedNotice
from notifier.records import WorkflowRecord, WorkflowStatus
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, HttpSink, every_message, text_of
from notifier.testing.model import Message, MessageVersion
from notifier.testing.project_bot import (
    SteeredWorkflow,
    new_record,
    project_bot,
    settled_record,
    settled_rows,
)

ZW = ZERO_WIDTH_SPACE

# What Discord (or Apprise's Discord plugin, which turns "@123" into "<@123>") would read as a
# mention, and what Discord would draw as a masked link.
RAW_MENTION = re.compile(r"@(?:everyone|here)|<@[!&]?\d+>|@[!&]?\d+", re.IGNORECASE)
LIVE_MASKED_LINK = re.compile(r"\]\s*\(")


# ---------------------------------------------------------------------------------------------
# The rule, as a table


INERT_CASES = [
    ("@everyone look", f"@{ZW}everyone look"),
    ("@here", f"@{ZW}here"),
    ("@EveryOne", f"@{ZW}EveryOne"),
    ("<@&42>", f"<@{ZW}&42>"),
    ("<@1234>", f"<@{ZW}1234>"),
    ("<@!1234>", f"<@{ZW}!1234>"),
    ("@1234 (Apprise would make it <@1234>)", f"@{ZW}1234 (Apprise would make it <@{ZW}1234>)"),
    ("x@everyone", f"x@{ZW}everyone"),
    ("`@everyone` in code", f"`@{ZW}everyone` in code"),
    ("mail ops@example.com", f"mail ops@{ZW}example.com"),
    ("[verify](https://evil.example/x)", f"[verify]{ZW}(https://evil.example/x)"),
    ("[verify](<https://evil.example/x>)", f"[verify]{ZW}(<https://evil.example/x>)"),
    ("[verify] (https://evil.example/x)", f"[verify]{ZW} (https://evil.example/x)"),
    ("[verify]\n(https://evil.example/x)", f"[verify]{ZW}\n(https://evil.example/x)"),
    ("[[nested]](https://evil.example/x)", f"[[nested]]{ZW}(https://evil.example/x)"),
    ("ends with [label]", f"ends with [label]{ZW}"),
    ("[a] and [b] here", "[a] and [b] here"),
    ("https://example.com/page", "https://example.com/page"),
    ("<https://example.com/page>", "<https://example.com/page>"),
    ("plain words, 100% (fine)", "plain words, 100% (fine)"),
    ("", ""),
    (f"@{ZW}everyone [x]{ZW}(y)", f"@{ZW}everyone [x]{ZW}(y)"),
]


@pytest.mark.parametrize(("text", "expected"), INERT_CASES)
def test_inert_text_pings_nobody_hides_no_link_and_keeps_its_words(
    text: str, expected: str
) -> None:
    shown = inert(text)

    assert shown == expected
    assert RAW_MENTION.findall(shown) == []
    assert LIVE_MASKED_LINK.findall(shown) == []
    assert shown.replace(ZW, "") == text.replace(ZW, "")  # only invisible spaces were added
    assert inert(shown) == shown  # text made inert twice is the same text


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [(None, {"parse": []}), (42, {"parse": [], "users": ["42"]})],
)
def test_allowed_mentions_permit_nobody_or_only_the_named_user(
    user_id: int | None, expected: dict[str, list[str]]
) -> None:
    assert allowed_mentions(user_id) == expected


def test_a_notice_keeps_the_requesters_mention_and_makes_every_other_field_inert() -> None:
    page = "@everyone <@&7> <@!8> @9 [verify](https://evil.example/login)"
    notice = Notice(
        event=Event.FAILED,
        workflow_id="w1",
        user_id=42,
        user_name=page,  # a display name is the user's to choose
        command="autointel",
        options={"url": f"http://x/{page}", "depth": page},
        summary=page,
        error=page,
        stage=page,
        rung=page,
    )
    every_field = " ".join(f"{{{name}}}" for name in sorted(notice_field_names()))
    template = MessageTemplate(title="Failed for {user_mention}", body=every_field)

    message = RenderedNotice.render(template, notice.template_fields())

    assert message.title == "Failed for <@42>"  # the operator named the requester on purpose
    assert message.body.count("evil.example") == 7  # user, url, depth, summary, error, stage, rung
    assert [m for m in RAW_MENTION.findall(message.body) if m != "<@42>"] == []
    assert LIVE_MASKED_LINK.findall(message.body) == []


# ---------------------------------------------------------------------------------------------
# Every place a message leaves the bot, with the real bot and the emulator


NAMED = {  # the operator names the requester on purpose: that mention may ping (them only)
    "completed": {
        "title": "Done {command} for {user_mention}: {summary}",
        "body": "{user_mention} {summary}",
    },
    "failed": {
        "title": "Failed {command} for {user_mention}: {error}",
        "body": "{user_mention} {error}",
    },
}
PLAIN = {
    "completed": {"title": "Done {command}: {summary}", "body": "{summary}"},
    "failed": {"title": "Failed {command}: {error}", "body": "{error}"},
}
WEBHOOK_NOTIFIERS = {  # name: (options, templates)
    "hook-native-embed": ({"via": "native", "embed": True}, NAMED),
    "hook-native-text": ({"via": "native", "embed": False}, PLAIN),
    "hook-apprise-embed": ({"via": "apprise", "embed": True}, NAMED),
    "hook-apprise-text": ({"via": "apprise", "embed": False}, PLAIN),
}
NAMED_HOOKS = [name for name, (_, templates) in WEBHOOK_NOTIFIERS.items() if templates is NAMED]
RUNS = 3  # one per rung: interaction, channel, DM


def _hostile(emulator: DiscordEmulator) -> str:
    """A page's words, with real ids: every mention here would ping someone if parsed."""
    bob = emulator.users["bob"].id
    role = emulator.add_role("mods").id
    return (
        f"@everyone @here <@&{role}> <@&{emulator.guild_id}> <@{bob}> <@!{bob}> @{bob} "
        "[verify](https://evil.example/login) [gift](<https://evil.example/gift>)"
    )


def _result(hostile: str) -> dict[str, Any]:
    return {
        "title": f"Page title {hostile}",
        "summary": hostile,
        "links": [hostile, "https://example.com/fine"],
        "notes": {"from the page": hostile},
        "pages_analysed": 3,
    }


async def _run(
    emulator: DiscordEmulator,
    bot: NotifierBot,
    steered: SteeredWorkflow,
    *,
    private: bool = False,
    hand_off: bool,
    progress: Mapping[str, Any] | None = None,
) -> WorkflowRecord:
    """One /autointel by alice with `steered` as its body; with `hand_off`, it outlasts the
    interaction (hand-off, then the token dies) before it ends."""
    steered.install(bot)
    known = {r.workflow_id for r in await bot.store.search(ResultQuery())}
    options: dict[str, Any] = {"url": "http://x/", **({"private": True} if private else {})}
    handle = await emulator.trigger_command("autointel", options, user="alice")
    await steered.started.wait()
    if progress is not None:
        assert steered.report is not None
        steered.report(**progress)
        await handle.wait_for_original(lambda m: "evil.example" in text_of(m), timeout_s=10)
    if hand_off:
        await handle.wait_for_message(lambda m: "Still working" in m.content, timeout_s=15)
        handle.expire()
    steered.release.set()
    record = await new_record(bot, known)
    return await settled_record(bot, record.workflow_id)


def _with_text(message: Message) -> list[MessageVersion]:
    """The versions of a message that showed something (not a "thinking" placeholder)."""
    return [v for v in message.versions if v.content or v.embeds or v.attachments]


@pytest.mark.discord_emulator(interaction_ttl_s=6.0)
async def test_page_text_pings_nobody_and_links_nowhere_in_any_message_the_bot_sends(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    alice = emulator.users["alice"].id
    hostile = _hostile(emulator)
    feed = emulator.add_channel("ops-feed")
    hooks = {
        name: emulator.create_incoming_webhook(feed.id, name=name) for name in WEBHOOK_NOTIFIERS
    }
    notifiers: list[dict[str, Any]] = [
        {
            "name": name,
            "plugin": "discord_webhook",
            "on": ["completed", "failed"],
            "options": {"url": f"discord://{hooks[name][0]}/{hooks[name][1]}", **options},
            "templates": templates,
        }
        for name, (options, templates) in WEBHOOK_NOTIFIERS.items()
    ]
    async with HttpSink() as sink:
        notifiers += [
            {"name": "dm", "plugin": "dm", "on": ["completed", "failed"], "options": {}},
            {
                "name": "json",
                "plugin": "apprise",
                "on": ["completed", "failed"],
                "options": {"urls": [sink.json_url("/ops")]},
                "templates": PLAIN,
            },
        ]
        async with project_bot(emulator, tmp_path / "data", {"notifiers": notifiers}) as bot:
            # 1. The interaction: progress (the page's words as stage detail), then the result.
            by_interaction = await _run(
                emulator,
                bot,
                SteeredWorkflow(_result(hostile)),
                hand_off=False,
                progress={"stage": "crawling", "progress": 0.5, "detail": hostile},
            )
            # 2. The channel rung, where the bot mentions alice on purpose.
            in_channel = await _run(emulator, bot, SteeredWorkflow(_result(hostile)), hand_off=True)
            # 3. The DM rung, with an error a page caused.
            failing = SteeredWorkflow()
            failing.fail_with = hostile
            by_dm = await _run(emulator, bot, failing, private=True, hand_off=True)
            # 4. A command reply (nextcord's own request): /retrieve_results of the first one.
            reply = await emulator.trigger_command(
                "retrieve_results", {"workflow_id": by_interaction.workflow_id}, user="alice"
            )
            await reply.wait_for_message(lambda m: "evil.example" in text_of(m), timeout_s=10)
            for name in [*WEBHOOK_NOTIFIERS, "dm", "json"]:
                rows = await settled_rows(bot, name, RUNS)
                assert len(rows) == RUNS, (name, rows)
                assert {r.status for r in rows} == {OutboxStatus.SENT}, (name, rows)

    # Every rung and sink was really used, and showed the page's words.
    assert by_interaction.delivered_via == "interaction"
    assert in_channel.delivered_via == "channel"
    assert (by_dm.status, by_dm.delivered_via) == (WorkflowStatus.FAILED, "dm")
    shown: dict[str, list[Message]] = {
        name: emulator.webhook_messages(hook_id) for name, (hook_id, _) in hooks.items()
    }
    shown["channel rung"] = [
        m
        for m in emulator.channel_messages()
        if m.interaction_id is None and not m.webhook_id and "evil.example" in text_of(m)
    ]
    shown["DMs"] = emulator.dm_messages("alice")
    shown["interaction"] = [m for h in emulator.interactions for m in h.messages]
    for where, messages in shown.items():
        assert any("evil.example" in text_of(m) for m in messages), where
    assert len(sink.bodies()) == RUNS

    # The requester's own mention stays where the bot or the operator put it, and pings her.
    named = [m for name in NAMED_HOOKS for m in shown[name]] + shown["channel rung"]
    assert named and all(f"<@{alice}>" in m.content for m in named)
    assert all(m.allowed_mentions == allowed_mentions(alice) for m in named)

    # Every version of every message said allowed_mentions, permitting nobody but alice ...
    unsafe = [
        (m.id, v.allowed_mentions)
        for m in every_message(emulator)
        for v in _with_text(m)
        if v.allowed_mentions is None
        or v.allowed_mentions.get("parse")
        or v.allowed_mentions.get("roles")
        or not set(v.allowed_mentions.get("users", [])) <= {str(alice)}
    ]
    assert unsafe == []
    # ... and no raw mention (but alice's own, which Apprise's Markdown shows as "<@id\\>") nor a
    # live masked link is left in any text.
    hers = {f"<@{alice}>", f"@{alice}"}
    for message in every_message(emulator):
        for version in _with_text(message):
            text = text_of(version)
            assert [m for m in RAW_MENTION.findall(text) if m not in hers] == [], text
            assert LIVE_MASKED_LINK.findall(text) == [], text
    for body in sink.bodies():
        text = f"{body['title']}\n{body['message']}"
        assert "evil.example" in text
        assert RAW_MENTION.findall(text) == [] and LIVE_MASKED_LINK.findall(text) == [], text
