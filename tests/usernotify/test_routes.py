"""Which notices reach a user's channels (`route`): the events and workflows they chose, what the
operator allows, and the daily limit; and the replies of /notify for choices, DMs that Discord
refuses, `off` and `forget`."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.events import Event, Notice
from notifier.fanout.outbox import NewNotice, Outbox
from notifier.fanout.plugin import PermanentSendError, PluginContext
from notifier.metrics import USER_NOTIFICATIONS
from notifier.store.user_settings import UserSettingsStore
from notifier.usernotify import UserNotifications

from .conftest import Clock, DMs, make_settings

ALICE, BOB = 111, 222


def notice(event: Event = Event.COMPLETED, command: str = "autointel", user: int = ALICE) -> Notice:
    return Notice(
        event=event,
        workflow_id=f"wf-{event}-{command}",
        user_id=user,
        user_name="u",
        command=command,
    )


@pytest.mark.parametrize(
    ("event", "command", "routed"),
    [
        (Event.COMPLETED, "autointel", ["user:dm", "user:webhook"]),
        (Event.COMPLETED, "/autointel", ["user:dm", "user:webhook"]),
        (Event.FAILED, "autointel", ["user:dm"]),  # the webhook chose completed only
        (Event.COMPLETED, "summarise", ["user:webhook"]),  # DMs only for autointel
        (Event.HANDOFF, "autointel", []),  # opt-in, not chosen
        (Event.PROGRESS, "autointel", []),  # never a user event
        (Event.STARTED, "autointel", []),
    ],
)
async def test_route_follows_the_events_and_workflows_chosen(
    tmp_path: Path,
    users: UserSettingsStore,
    context: PluginContext,
    event: Event,
    command: str,
    routed: list[str],
) -> None:
    notify = UserNotifications(make_settings(tmp_path), users, context)
    await notify.set_dm(ALICE, None, ["/autointel"])
    await notify.set_webhook(ALICE, "http://127.0.0.1:9/hook", ["completed"], None)
    assert list(await notify.routes.route(notice(event, command))) == routed
    assert list(await notify.routes.route(notice(event, command, user=BOB))) == []
    await notify.close()


async def test_a_via_the_operator_does_not_allow_is_neither_offered_nor_routed(
    tmp_path: Path, users: UserSettingsStore, context: PluginContext
) -> None:
    before = UserNotifications(make_settings(tmp_path), users, context)
    await before.set_webhook(ALICE, "http://127.0.0.1:9/hook", None, None)
    await before.close()
    notify = UserNotifications(make_settings(tmp_path, allow=["dm"]), users, context)
    assert notify.offered() == ("dm",)  # e-mail: no mail server named either
    reply = await notify.set_webhook(ALICE, "http://127.0.0.1:9/hook", None, None)
    assert reply == "Webhook notices are not offered on this bot. It offers: dm."
    assert "not offered on this bot now" in await notify.show(ALICE)
    assert list(notify.routes.notifiers()) == ["user:dm"]
    assert list(await notify.routes.route(notice())) == []


@pytest.mark.parametrize(
    ("events", "workflows", "reply"),
    [
        (
            ["complet"],
            None,
            "events: unknown event 'complet' (choose from completed, failed, persisted, "
            "handoff, resumed)",
        ),
        (["progress"], None, "events: unknown event 'progress' (choose from completed"),
        ([" , "], None, "events: choose at least one"),
        (None, ["auto intel!"], "workflows: 'intel!' is not a command name"),
        (
            ["failed, handoff"],
            ["autointel"],
            "DM notices are on for failed, handoff of only autointel.",
        ),
        (None, None, "DM notices are on for completed, failed, persisted of every workflow."),
    ],
)
async def test_choices_are_checked_and_a_bad_value_is_named(
    tmp_path: Path,
    users: UserSettingsStore,
    context: PluginContext,
    events: list[str] | None,
    workflows: list[str] | None,
    reply: str,
) -> None:
    notify = UserNotifications(make_settings(tmp_path), users, context)
    assert (await notify.set_dm(ALICE, events, workflows)).startswith(reply)


async def test_the_daily_limit_stops_routing_and_says_so_once(
    tmp_path: Path, users: UserSettingsStore, context: PluginContext, clock: Clock
) -> None:
    notify = UserNotifications(
        make_settings(tmp_path, per_user_daily_limit=2), users, context, clock=clock
    )
    await notify.set_dm(ALICE, None, None)
    limited = USER_NOTIFICATIONS.labels("dm", "limited")
    before = limited._value.get()
    routed = [list(await notify.routes.route(notice())) for _ in range(4)]
    assert routed == [["user:dm"], ["user:dm"], [], []]
    assert limited._value.get() - before == 2
    [note] = await notify.take_notes(ALICE)
    assert note.startswith("You reached today's limit of 2 notices")
    clock.now += 86_400  # the next UTC day
    assert list(await notify.routes.route(notice())) == ["user:dm"]


async def test_a_dm_discord_refuses_turns_dms_off_with_a_note(
    tmp_path: Path, users: UserSettingsStore, context: PluginContext, dms: DMs
) -> None:
    notify = UserNotifications(make_settings(tmp_path), users, context)
    await notify.set_dm(ALICE, None, None)
    assert (await notify.test(ALICE)) == "Test notice:\n- DM: sent"
    [dm] = dms.to(ALICE)
    assert dm == "Your notify-test workflow finished"
    dms.closed.add(ALICE)
    notifier = notify.routes.notifiers()["user:dm"]
    message = notifier.render(
        notice(), idempotency_key="k", attempt=1, timeout_s=5, settled_targets=frozenset()
    )
    with pytest.raises(PermanentSendError, match="50007"):
        await notifier.plugin.send(notice(), message)
    assert not (await users.get(ALICE)).channels["dm"].enabled
    [note] = await notify.take_notes(ALICE)
    assert note.startswith("DM notices are off: Discord would not let the bot DM you")
    assert await notify.take_notes(ALICE) == []
    assert list(await notify.routes.route(notice())) == []


async def test_off_and_forget_say_what_they_removed(
    tmp_path: Path, users: UserSettingsStore, context: PluginContext
) -> None:
    settings = make_settings(tmp_path)
    notify = UserNotifications(settings, users, context)
    outbox = await Outbox.open(tmp_path / "outbox.sqlite3")
    notify.bind_outbox(outbox)
    try:
        await notify.set_dm(ALICE, None, None)
        await notify.set_webhook(ALICE, "http://127.0.0.1:9/hook", None, None)
        assert (
            await notify.off(ALICE, "sms") == "via: unknown 'sms' (choose from dm, email, webhook)"
        )
        assert await notify.off(ALICE, "dm") == "DM notices are off."
        assert await notify.off(ALICE, "dm") == "You had no DM channel; nothing changed."
        await outbox.enqueue(
            [
                NewNotice("user:webhook", "user_webhook", notice()),
                NewNotice("ops", "dm", notice(user=BOB)),
            ],
            now_s=0,
        )
        reply = await notify.forget(ALICE)
        assert reply.startswith(
            "Deleted everything stored about your notifications: channels (1), webhook secret (1)"
        )
        assert "queued notices (1). Your workflow results are kept until retention" in reply
        assert [row.notifier for row in await outbox.rows(limit=None)] == ["ops"]
        assert (await users.get(ALICE)).channels == {}
        assert (await notify.forget(ALICE)).startswith(
            "Nothing was stored about your notifications; nothing to delete. Your workflow "
            "results are kept until retention removes them"
        )
    finally:
        await outbox.close()
        await notify.close()
