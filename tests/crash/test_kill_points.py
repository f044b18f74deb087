"""kill -9 of bot.py at chosen points, then a restart: nothing a user was owed is lost or doubled.

Each test runs the real `bot.py` as a subprocess against the emulator, waits until the process is
exactly at the point under test (observed from outside: a progress message, a request held by
the emulator, rows in the bot's SQLite files), sends SIGKILL, checks what is on disk, restarts it
and checks what users and notifiers received. The restarted process is stopped with SIGTERM and
must exit 0 with no traceback (and no bot token) in its output.

1. Mid-workflow: two runs of a workflow that records no step (a public one by alice, a private
   one by bob) are killed while working. After the restart both rows are `interrupted`, alice is
   told in the channel, bob by DM (his workflow was private: nothing about it in the channel),
   each once. (A crawl records its pages and resumes instead: test_resume.py.)
2. After persist, before delivery: the result is in the store, but the followup carrying it is
   held unanswered by the emulator (`inject_fault(..., "hang")`) when the process dies. The path
   is then cleared; the restart delivers the stored result once, in the channel (the interaction
   token died with the process). A third start delivers nothing again.
3. After notices are queued: every notice is owed to a sink that holds requests unanswered and to
   users' DMs that hang; killed with all of them in flight. After the restart each notice is sent
   exactly once: the sink sees each idempotency key answered once, each DM is posted once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from notifier.config import StorageSettings
from notifier.store import ResultStore
from notifier.testing import DiscordEmulator, HttpSink, bot_process, every_message, text_of
from notifier.testing.project_bot import stored_workflow
from notifier.testing.site import DemoSite

from .support import (
    config_with_ops,
    outbox_rows,
    result_file,
    stages,
    workflow_file,
    workflow_rows,
    write_config,
)

TITLE = "Resilience Handbook"  # the DemoSite start page's title: it is in every result

# A workflow that records no step: a dead process's run of it is interrupted, never resumed.
SLOW_WORKFLOW = """
import asyncio

from notifier import Context, workflow


@workflow(description="Works slowly, recording nothing")
async def slow(ctx: Context) -> dict:
    ctx.progress(stage="crawling", fraction=0.1, detail="working")
    await asyncio.sleep(3600)
    return {}
"""


# ---------------------------------------------------------------------------------------------
# 1. Mid-workflow


async def test_a_kill_mid_workflow_is_reported_as_interrupted_after_the_restart(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, emulator, workflow_file(tmp_path, "slow", SLOW_WORKFLOW))
    alice, bob = emulator.users["alice"].id, emulator.users["bob"].id
    async with bot_process(config, emulator, commands=("slow",)) as first:
        public = await emulator.trigger_command("slow", user="alice")
        private = await emulator.trigger_command("slow", {"private": True}, user="bob")
        for handle in (public, private):
            await handle.wait_for_message(lambda m: "crawling" in text_of(m), timeout_s=60)

        async def both_stages_stored() -> bool:
            return await stages(data) == ["crawling", "crawling"]

        await first.wait_until(both_stages_stored, what="both stages in the index")
        await first.kill_9()

    rows = await workflow_rows(data)
    assert sorted(r.status for r in rows.values()) == ["running", "running"]
    by_user = {r.user_id: r.workflow_id for r in rows.values()}
    assert set(by_user) == {alice, bob}

    async with bot_process(config, emulator, commands=("slow",)) as second:

        async def both_told() -> bool:
            current = await workflow_rows(data)
            return all(r.delivery_state == "delivered" for r in current.values())

        await second.wait_until(both_told, what="both interruptions delivered")
        await second.stop()
    # Nothing resumed them behind anyone's back: they record no step.
    assert not [text_of(m) for m in every_message(emulator) if "resumed" in text_of(m)]

    rows = await workflow_rows(data)
    assert {r.status for r in rows.values()} == {"interrupted"}
    assert rows[by_user[alice]].delivered_via == "channel"
    assert rows[by_user[bob]].delivered_via == "dm"

    def told(messages: list[Any], workflow_id: str) -> list[Any]:
        return [
            m
            for m in messages
            if "was interrupted" in text_of(m) and workflow_id in text_of(m) and not m.deleted
        ]

    in_channel = told(emulator.channel_messages(), by_user[alice])
    assert len(in_channel) == 1, [text_of(m) for m in in_channel]
    assert f"<@{alice}>" in in_channel[0].content
    assert len(told(emulator.dm_messages("bob"), by_user[bob])) == 1
    # Bob's workflow was private: nobody else in the channel ever sees a word of it.
    public = [m for m in emulator.channel_messages() if not m.ephemeral]
    assert not [m for m in public if by_user[bob] in text_of(m)]
    for workflow_id in by_user.values():
        document = json.loads(result_file(data, workflow_id).read_text())
        assert document["workflow"]["status"] == "interrupted"
        assert document["result"]["last_stage"] == "crawling"


# ---------------------------------------------------------------------------------------------
# 2. After persist, before delivery


async def _stored_undelivered(data: Path, emulator: DiscordEmulator, title: str) -> str:
    """A result a dead process persisted and never delivered (as the runner leaves it)."""
    store = await ResultStore.open(StorageSettings(path=data), maintain=False)
    try:
        return await stored_workflow(
            store,
            emulator,
            user="carol",
            result={"title": title, "summary": "."},
            delivered_via=None,
            created_at=time.time() - 5,
        )
    finally:
        await store.close()


async def test_a_result_persisted_but_not_delivered_before_a_kill_is_delivered_once(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, emulator)
    alice = emulator.users["alice"].id
    # Every followup (the result's carrier on the interaction rung) is held, never answered.
    held = emulator.inject_fault("POST", "/webhooks/*", "hang", count=None)
    async with DemoSite(pages=3) as site, bot_process(config, emulator) as first:
        handle = await emulator.trigger_command(
            "autointel", {"url": site.url, "depth": "quick"}, user="alice"
        )

        async def persisted_and_held() -> bool:
            rows = await workflow_rows(data)
            return (
                len(rows) == 1
                and next(iter(rows.values())).status == "completed"
                and held.hits >= 1
            )

        await first.wait_until(persisted_and_held, what="the result persisted, its delivery held")
        await first.kill_9()

    (row,) = (await workflow_rows(data)).values()
    workflow_id = row.workflow_id
    assert (row.status, row.delivery_state) == ("completed", "pending")
    assert TITLE in result_file(data, workflow_id).read_text()
    assert not [m for m in every_message(emulator) if TITLE in text_of(m)]  # nobody has it yet
    assert [m.id for m in handle.messages]  # only the "thinking"/progress message

    emulator.clear_faults()  # the path is clear again
    async with bot_process(config, emulator) as second:

        async def delivered() -> bool:
            rows = await workflow_rows(data)
            return rows[workflow_id].delivery_state == "delivered"

        await second.wait_until(delivered, what="the stored result delivered")
        await second.stop()

    # A third start must not deliver it again. It is known to have run its recovery when a
    # second stored-but-undelivered result (made now) has been delivered.
    marker = await _stored_undelivered(data, emulator, "Recovery ran")
    async with bot_process(config, emulator) as third:

        async def marker_delivered() -> bool:
            rows = await workflow_rows(data)
            return rows[marker].delivery_state == "delivered"

        await third.wait_until(marker_delivered, what="the third start's recovery")
        await third.stop()

    results = [m for m in every_message(emulator) if TITLE in text_of(m) and not m.deleted]
    assert len(results) == 1, [text_of(m)[:200] for m in results]
    (message,) = results
    assert workflow_id in text_of(message)
    assert f"<@{alice}>" in message.content
    assert message.channel_id == emulator.channel_id and not message.ephemeral
    rows = await workflow_rows(data)
    assert (rows[workflow_id].delivery_state, rows[workflow_id].delivered_via) == (
        "delivered",
        "channel",
    )


# ---------------------------------------------------------------------------------------------
# 3. After notices are queued


async def test_notices_queued_before_a_kill_are_each_sent_once_after_the_restart(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    # While `holding`, the sink answers nothing (the client dies first); then 200 at once.
    async with HttpSink(holding=True) as sink, DemoSite(pages=3) as site:
        requester = {
            "name": "requester",
            "plugin": "dm",
            "on": ["completed", "failed"],
            "options": {"to_requester": True},
        }
        config = config_with_ops(
            tmp_path, emulator, sink, ["started", "completed", "failed"], requester
        )
        # DMs (bot-token channel posts) hang; results still go by interaction followup.
        dms = emulator.inject_fault("POST", "/channels/*/messages", "hang", count=None)
        async with bot_process(config, emulator) as first:
            ok = await emulator.trigger_command(
                "autointel", {"url": site.url, "depth": "quick"}, user="alice"
            )
            broken = await emulator.trigger_command(
                "autointel", {"url": site.url + "missing", "depth": "quick"}, user="bob"
            )
            await ok.wait_for_message(lambda m: TITLE in text_of(m), timeout_s=60)
            await broken.wait_for_message(lambda m: "failed" in text_of(m), timeout_s=60)

            async def all_in_flight() -> bool:
                return sink.held == 4 and dms.hits == 2

            await first.wait_until(all_in_flight, what="4 notices held by the sink, 2 DMs hanging")
            owed = await outbox_rows(data)
            assert Counter((r.notifier, r.event, r.status) for r in owed) == {
                ("ops", "started", "pending"): 2,
                ("ops", "completed", "pending"): 1,
                ("ops", "failed", "pending"): 1,
                ("requester", "completed", "pending"): 1,
                ("requester", "failed", "pending"): 1,
            }
            await first.kill_9()

        held_keys = set(sink.keys())
        assert None not in held_keys and len(held_keys) == 4
        assert not [r for r in sink.received if r.status is not None]  # none was answered
        assert not emulator.dm_messages("alice") and not emulator.dm_messages("bob")
        assert sorted(r.status for r in await outbox_rows(data)) == ["pending"] * 6

        # The sink and Discord recover; the restarted bot sends what the dead one owed.
        sink.holding = False
        emulator.clear_faults()
        async with bot_process(config, emulator) as second:

            async def all_sent() -> bool:
                rows = await outbox_rows(data)
                return len(rows) == 6 and all(r.status == "sent" for r in rows)

            await second.wait_until(all_sent, what="every owed notice sent")
            await second.stop()

    answered_keys = Counter(r.key for r in sink.received if r.ok)
    assert set(answered_keys) == held_keys  # the keys the first process used, and no other
    assert all(n == 1 for n in answered_keys.values()), answered_keys
    assert sorted(sink.titles()) == [
        "Completed: autointel",
        "Failed: autointel",
        "Started: autointel",
        "Started: autointel",
    ]
    ids = {r.user_id: r.workflow_id for r in (await workflow_rows(data)).values()}
    for user in ("alice", "bob"):
        notices = [
            m for m in emulator.dm_messages(user) if ids[emulator.users[user].id] in text_of(m)
        ]
        assert len(notices) == 1, (user, [text_of(m)[:120] for m in notices])
    final = await outbox_rows(data)
    assert {r.key for r in final if r.notifier == "ops"} == held_keys
