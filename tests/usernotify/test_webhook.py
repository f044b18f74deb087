"""Webhook callbacks: a receiver on 127.0.0.1 verifies every callback with the standardwebhooks
library's own `Webhook.verify`; a tampered body or an old timestamp fails there; a retry after a
500 carries the same `webhook-id`; callbacks that keep failing are turned off; and the SSRF guard
of /autointel refuses private and loopback targets in the same words."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from notifier.events import Event, Notice
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxStatus
from notifier.fanout.plugin import PermanentSendError, PluginContext, TransientSendError
from notifier.store.user_settings import UserSettingsStore
from notifier.testing import HttpSink, wait_until
from notifier.testing.site import table_resolver
from notifier.usernotify import UserNotifications, check_callback_url
from notifier.usernotify.webhook import callback_body, signed_headers
from notifier.workflows.netguard import AddressRefused, URLRefused

from .conftest import DMs, make_settings

ALICE = 111


def completed(workflow_id: str = "wf-hook-1") -> Notice:
    return Notice(
        event=Event.COMPLETED,
        workflow_id=workflow_id,
        user_id=ALICE,
        user_name="alice",
        command="autointel",
        summary="3 pages analysed by @everyone",
        occurred_at=1_800_000_000.0,
    )


async def receiver() -> HttpSink:
    sink = HttpSink()
    await sink.start()
    return sink


def secret_in(reply: str) -> str:
    found = re.search(r"whsec_[A-Za-z0-9+/=]+", reply)
    assert found, reply
    return found.group(0)


async def test_callbacks_verify_and_a_retry_after_a_500_keeps_its_webhook_id(
    tmp_path: Path, users: UserSettingsStore, context: PluginContext
) -> None:
    settings = make_settings(tmp_path)
    notify = UserNotifications(settings, users, context)
    sink = await receiver()
    fanout = await Fanout.open(settings, context, users=notify.routes)
    try:
        reply = await notify.set_webhook(ALICE, sink.url("/hook?token=abc"), None, None)
        assert "shown only now" in reply and "token=abc" not in reply
        secret = secret_in(reply)
        assert "whsec_" not in await notify.set_webhook(ALICE, sink.url(), None, None)  # once

        sink.statuses.append(500)
        await fanout.emit(completed())
        await wait_until(lambda: len(sink.received) == 2 and sink.received[1].ok, what="retry")
        await fanout.drain(5)
        [row] = await fanout.outbox.rows(limit=None)
        assert (row.status, row.attempts) == (OutboxStatus.SENT, 2)
    finally:
        await fanout.close()
        await notify.close()
        await sink.close()

    first, second = sink.received
    assert [r.status for r in sink.received] == [500, 200]
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.headers["webhook-id"] == f"msg_{row.idempotency_key}"
    for delivery in sink.received:
        body = Webhook(secret).verify(delivery.raw, delivery.headers)
        assert body == {
            "event": "completed",
            "workflow_id": "wf-hook-1",
            "command": "autointel",
            "status": "completed",
            "summary": "3 pages analysed by @\u200beveryone",
            "retrieval_command": "/retrieve_results workflow_id:wf-hook-1",
            "finished_at": "2027-01-15T08:00:00Z",
        }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(second.raw.replace(b"wf-hook-1", b"wf-hook-2"), second.headers)
    assert (await users.get(ALICE)).channels["webhook"].failures == 0  # reset by the 200


def test_an_old_timestamp_fails_verification() -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    body = callback_body(completed())
    fresh = signed_headers(secret, msg_id="msg_1", body=body, now_s=time.time())
    assert Webhook(secret).verify(body, fresh)["workflow_id"] == "wf-hook-1"
    old = signed_headers(secret, msg_id="msg_1", body=body, now_s=time.time() - 600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, old)


async def test_the_result_is_sent_only_when_the_operator_allows_it(
    tmp_path: Path, users: UserSettingsStore, context: PluginContext
) -> None:
    async def load_result(workflow_id: str) -> dict[str, object]:
        return {"pages": 3, "of": workflow_id}

    sink = await receiver()
    bodies = []
    for include in (False, True):
        settings = make_settings(tmp_path, webhook_include_result=include)
        notify = UserNotifications(settings, users, context, load_result=load_result)
        await notify.set_webhook(ALICE, sink.url(), None, None)
        assert "sent" in await notify.test(ALICE)
        await notify.close()
        bodies.append(sink.received[-1].body)
    await sink.close()
    assert "result" not in bodies[0]
    assert bodies[1]["result"] == {"pages": 3, "of": bodies[1]["workflow_id"]}


async def test_callbacks_that_keep_failing_are_turned_off_and_the_user_told(
    tmp_path: Path, users: UserSettingsStore, context: PluginContext, dms: DMs
) -> None:
    settings = make_settings(tmp_path, webhook_max_failures=2)
    notify = UserNotifications(settings, users, context)
    sink = await receiver()
    await notify.set_webhook(ALICE, sink.url(), None, None)
    sink.statuses.extend([500, 404])
    notifier = notify.routes.notifiers()["user:webhook"]
    notice = completed()
    message = notifier.render(
        notice, idempotency_key="k1", attempt=1, timeout_s=5, settled_targets=frozenset()
    )
    with pytest.raises(TransientSendError, match="HTTP 500"):
        await notifier.plugin.send(notice, message)
    with pytest.raises(PermanentSendError, match="turned off after 2 failures"):
        await notifier.plugin.send(notice, message)
    outcome = await notifier.plugin.send(notice, message)  # a row still queued is skipped
    await notify.close()
    await sink.close()
    assert outcome.status == "skipped" and len(sink.received) == 2
    channel = (await users.get(ALICE)).channels["webhook"]
    assert not channel.enabled and "2 deliveries in a row failed" in channel.disabled_reason
    [told] = dms.to(ALICE)
    assert told.startswith("Webhook callbacks are off: the last 2 deliveries to http://127.0.0.1")


# The /autointel SSRF table (tests/workflows/test_netguard.py, tests/security/test_ssrf_bot.py)
# as callback targets, with the guard on: (URL, words the refusal must contain).
SSRF_FORMS = [
    ("https://127.0.0.1/", "loopback"),
    ("https://127.0.0.1:8443/admin", "loopback"),
    ("https://[::1]/", "loopback"),
    ("https://10.1.2.3/", "private"),
    ("https://172.16.0.1/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://2852039166/latest/meta-data/", "link-local"),
    ("https://0xa9.0xfe.0xa9.0xfe/", "link-local"),
    ("https://[fe80::1]/", "link-local"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://100.64.0.1/", "carrier-grade NAT"),
    ("https://[fd12:3456::1]/", "unique-local"),
    ("https://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("https://[::ffff:169.254.169.254]/", "link-local"),
    ("https://[64:ff9b::7f00:1]/", "NAT64"),
    ("https://2130706433/", "loopback"),
    ("https://0177.0.0.1/", "loopback"),
    ("https://0x7f.1/", "loopback"),
    ("https://127.1/", "loopback"),
    ("https://localhost/", "loopback"),
    ("https://intranet.test/hook", "private"),
    ("https://metadata.test/", "link-local"),
    ("https://dual.test/", "private"),  # any private address of a name refuses it
]
DNS = table_resolver(
    {
        "localhost": ["127.0.0.1"],
        "public.test": ["93.184.215.14"],
        "intranet.test": ["10.0.0.5"],
        "metadata.test": ["169.254.169.254"],
        "dual.test": ["93.184.215.14", "10.0.0.5"],
    }
)


@pytest.mark.parametrize(("url", "why"), SSRF_FORMS)
async def test_private_and_loopback_callbacks_are_refused_with_the_guards_words(
    url: str, why: str
) -> None:
    with pytest.raises(AddressRefused) as caught:
        await check_callback_url(url, allow_private=False, resolver=DNS)
    assert why in caught.value.reason
    assert "only public internet addresses" in caught.value.reason


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://public.test/hook", "must start with https://"),
        ("ftp://public.test/", "must start with https://"),
        ("https://user:pw@public.test/", "user name or password"),
        ("https://nowhere.test/", "could not be found"),
    ],
)
async def test_other_bad_callbacks_are_refused_in_words(url: str, words: str) -> None:
    with pytest.raises(URLRefused, match=re.escape(words)):
        await check_callback_url(url, allow_private=False, resolver=DNS)


async def test_a_public_https_callback_passes_and_set_webhook_names_a_refusal(
    tmp_path: Path, users: UserSettingsStore, context: PluginContext
) -> None:
    assert await check_callback_url("https://public.test/hook", allow_private=False, resolver=DNS)
    settings = make_settings(tmp_path, allow_private=False)
    notify = UserNotifications(settings, users, context, resolver=DNS)
    reply = await notify.set_webhook(ALICE, "https://metadata.test/x", None, None)
    await notify.close()
    assert reply.startswith("target: the host metadata.test is the address 169.254.169.254")
    assert "webhook" not in (await users.get(ALICE)).channels
