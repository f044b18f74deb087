"""How each fault is injected at each stage, and what a cell then expects.

A fault is a small class: `configure` (before the bot starts: config, sinks, what the cell
expects), `strike` (at the stage's moment, see `cell.drive`), `after_delivery` (once the result is
stored and its delivery settled), `before_cli` (recovery before the operator reads the disk),
`check` (the fault's own assertions) and `cleanup`.

Stage moments: *start* is right after the command was acknowledged (or just before it, for faults
that must already be there when it arrives), before the first status edit; *progress* is before a
progress report; *handoff* is before the hand-off is due (those cells run with a 3 s token);
*final*
and *error* are before the result (or the failure) is delivered; *fanout* is before the workflow
ends, aimed at the notifier fanout's sends (an ops json:// sink and a `dm` notifier to the user).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, ClassVar

import aiohttp
import pytest

from notifier.discord.compat import live_session
from notifier.fanout.outbox import OutboxStatus
from notifier.testing import RateLimitRule, default_rate_limits, wait_until

from .cell import USER, WAIT_S, CellRun, big_result, codes_seen
from .harness import MetricSnapshot, SmtpSink, Tmpfs, TmpfsUnavailable

__all__ = ["FAULTS", "Fault"]

_ORIGINAL = r"^/webhooks/\d+/{token}/messages/@original$"
_FOLLOWUP = r"^/webhooks/\d+/{token}$"
_CHANNEL_POST = r"^/channels/\d+/messages$"
_ANY_TOKEN = r"[^/]+"

# The event of the first notice owed once a notifier goes down at each stage. At the progress
# stage that is `completed`: progress notices after the first are held by the fanout (one per 30 s
# per notifier and workflow, dropped when the workflow ends), so the next one owed is the end.
STAGE_EVENT = {
    "start": "started",
    "progress": "completed",
    "handoff": "handoff",
    "final": "completed",
    "error": "failed",
    "fanout": "completed",
}
EVENT_TITLE = {
    "started": "Started: autointel",
    "handoff": "Handed off: autointel",
    "completed": "Completed: autointel",
    "failed": "Failed: autointel",
}
NO_RUNG = "could not be delivered on any rung"


def _token(run: CellRun) -> str:
    return re.escape(run.handle.token) if run.handle is not None else _ANY_TOKEN


def stage_route(run: CellRun) -> tuple[str, re.Pattern[str]]:
    """The Discord call the stage makes first: (method, path pattern)."""
    token = _token(run)
    if run.stage in ("start", "progress"):
        return "PATCH", re.compile(_ORIGINAL.format(token=token))
    if run.stage == "fanout":
        return "POST", re.compile(_CHANNEL_POST)  # the dm notifier's DM
    return "POST", re.compile(_FOLLOWUP.format(token=token))  # hand-off notice, result, error


def requester_dm(events: list[str]) -> dict[str, Any]:
    return {"name": "requester", "plugin": "dm", "on": events, "options": {"to_requester": True}}


class Fault:
    name: ClassVar[str]
    # At the start stage: strike right after the command was acknowledged (the fault needs the
    # interaction), instead of just before the command arrives.
    strike_after_defer: ClassVar[bool] = False

    async def configure(self, run: CellRun) -> None:
        pass

    async def strike(self, run: CellRun) -> None:
        raise NotImplementedError

    async def after_delivery(self, run: CellRun) -> None:
        pass

    async def before_cli(self, run: CellRun) -> None:
        pass

    async def check(self, run: CellRun) -> None:
        pass

    async def cleanup(self, run: CellRun) -> None:
        pass

    # -- shared pieces ----------------------------------------------------------------------

    def with_requester_dm(self, run: CellRun, events: list[str] | None = None) -> None:
        run.add_notifier(requester_dm(events or ["completed", "failed"]))

    async def requester_dm_sent(self, run: CellRun) -> None:
        event = "failed" if run.failed else "completed"
        row = await run.wait_row(event, "requester", status=OutboxStatus.SENT)
        await run.emulator.wait_for_dm(
            USER, lambda m: run.workflow_id in m.content + str(m.embeds), timeout_s=WAIT_S
        )
        assert row.attempts >= 1


# ---------------------------------------------------------------------------------------------


class TokenExpired(Fault):
    """Discord kills the interaction token (`handle.expire()`): every webhook call answers
    401/50027. The ladder must find out once, never call with it again, and move to the channel."""

    name = "token_expired"
    strike_after_defer = True

    async def configure(self, run: CellRun) -> None:
        run.expected_rungs = {"channel"}
        run.metrics = [("notifier_workflow_delivery_total", {"rung": "channel"})]
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.metrics.append(
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "sent"})
            )

    async def strike(self, run: CellRun) -> None:
        run.require_handle().expire()

    async def check(self, run: CellRun) -> None:
        dead = run.token_calls_with_code(50027)
        assert len(dead) == 1, [f"{r.method} {r.path}" for r in dead]  # found out once
        # The operators hear that the interaction was lost.
        await run.wait_row("session_lost", status=OutboxStatus.SENT)
        assert any(run.workflow_id in str(b) for b in run.ops.bodies(run.workflow_id)), (
            run.ops.received
        )
        if run.stage == "fanout":
            await self.requester_dm_sent(run)


class SessionClosed(Fault):
    """The client's aiohttp session closes under the bot (the seed's `Session is closed`): the
    gateway dies with it; calls in flight fail. Nothing may be lost; the gateway comes back."""

    name = "session_closed"
    strike_after_defer = True

    async def configure(self, run: CellRun) -> None:
        run.metrics = [("notifier_discord_session_closed_total", {})]
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.metrics.append(
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "sent"})
            )

    async def strike(self, run: CellRun) -> None:
        bot = run.require_bot()
        run.notes["connects"] = _gateway_connects(run)
        await live_session(bot).close()

    async def after_delivery(self, run: CellRun) -> None:
        # The gateway died with the session; the bot connects again on a fresh one (resuming, or
        # identifying anew). A command sent while it is offline is lost on Discord too, so the
        # checks wait for it.
        await wait_until(lambda: _gateway_connects(run) > run.notes["connects"], timeout_s=WAIT_S)
        await wait_until(run.require_bot().is_ready, timeout_s=WAIT_S)

    async def check(self, run: CellRun) -> None:
        if run.stage == "fanout":
            await self.requester_dm_sent(run)


def _gateway_connects(run: CellRun) -> int:
    return run.emulator.ready_count + run.emulator.resume_count


class GatewayResumed(Fault):
    """The gateway websocket drops (close 4000) and nextcord resumes; events sent meanwhile are
    replayed. At the start stage the command is sent right after the drop."""

    name = "gateway_resumed"

    async def configure(self, run: CellRun) -> None:
        run.metrics = [("notifier_workflow_delivery_total", {"rung": run.natural_rung})]
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.metrics.append(
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "sent"})
            )

    async def strike(self, run: CellRun) -> None:
        run.notes["resumes"] = run.emulator.resume_count
        run.notes["identifies"] = run.emulator.identify_count
        await run.emulator.drop_gateway()

    async def after_delivery(self, run: CellRun) -> None:
        await run.emulator.wait_until_resume_count(run.notes["resumes"] + 1, timeout_s=WAIT_S)

    async def check(self, run: CellRun) -> None:
        assert run.emulator.identify_count == run.notes["identifies"], "re-identified, not resumed"
        if run.stage == "fanout":
            await self.requester_dm_sent(run)


class ServerErrorBurst(Fault):
    """A burst of 503s on the route the stage uses, long enough to exhaust one call's retries:
    that one message goes down the ladder; the next call tries the interaction again. At the
    fanout stage the sink answers 500/503/502 and the DM route 503s."""

    name = "5xx_burst"
    count = 3

    async def configure(self, run: CellRun) -> None:
        if run.stage in ("handoff", "final", "error"):
            run.expected_rungs = {"channel"}
            run.metrics = [("notifier_workflow_delivery_total", {"rung": "channel"})]
        else:
            run.expected_rungs = {"interaction"}
            run.metrics = [("notifier_workflow_delivery_total", {"rung": "interaction"})]
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.metrics += [
                ("notifier_notifications_sent_total", {"plugin": "apprise", "outcome": "retried"}),
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "retried"}),
            ]

    async def strike(self, run: CellRun) -> None:
        method, pattern = stage_route(run)
        run.notes["route"] = (method, pattern)
        run.emulator.inject_fault(method, pattern, "status", count=self.count, status=503)
        if run.stage == "fanout":
            run.notes["ops_seen"] = len(run.ops.received)
            run.ops.statuses.extend([500, 503, 502])

    async def check(self, run: CellRun) -> None:
        if run.stage == "fanout":  # both notifiers got through once the burst was over
            await run.wait_row("completed", status=OutboxStatus.SENT)
            statuses = [r.status for r in run.ops.received[run.notes["ops_seen"] :]]
            assert statuses == [500, 503, 502, 200], statuses
            await self.requester_dm_sent(run)
        method, pattern = run.notes["route"]
        burst = [
            r
            for r in run.emulator.requests
            if r.method == method and pattern.search(r.path) and r.status == 503
        ]
        if run.stage == "handoff":
            # The token is close to its end there: the lease may refuse the last retry (a call
            # that could land after expiry is never started), and no call meets a dead token.
            assert 1 <= len(burst) <= self.count, len(burst)
            assert run.token_calls_with_code(50027) == []
        else:
            assert len(burst) == self.count, [(r.method, r.path, r.status) for r in burst]
        if run.stage in ("start", "progress"):
            # The status edit the interaction refused was shown in the channel instead.
            assert [
                m
                for m in run.emulator.channel_messages(run.emulator.channel_id)
                if m.interaction_id is None and run.workflow_id in str(m.embeds)
            ]


class RateLimitStorm(Fault):
    """A 429 storm at the stage. Every bucket shrinks to one request per 0.5 s and other traffic
    on the same token (a second replica reading the status message) keeps draining the status
    message's bucket while the workflow reports progress 20 times a second: the bot meets
    Discord's own 429s (`retry_after`, `Via`; nextcord waits them out) until two were answered to
    it (or the workflow is delivered). The stage's route also answers two Cloudflare-style 429s
    (no `Via`: nextcord raises, the ladder retries). At the fanout stage the sink answers three
    429s and the DM route two Cloudflare-style ones."""

    name = "429_storm"
    strike_after_defer = True  # the storm rides the interaction's own token
    storm_answers = 2
    rule = RateLimitRule(1, 0.5)

    async def configure(self, run: CellRun) -> None:
        run.metrics = [("notifier_workflow_delivery_total", {"rung": run.natural_rung})]
        # nextcord's own line for a 429 without `Via` (it takes it for a Cloudflare ban).
        run.allowed_errors = [r"\[nextcord\.http\] .*appears to be a CloudFlare ban"]
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.metrics += [
                ("notifier_notifications_sent_total", {"plugin": "apprise", "outcome": "retried"}),
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "sent"}),
            ]

    async def strike(self, run: CellRun) -> None:
        emulator = run.emulator
        run.notes["bot_429s_before"] = len(_bot_429s(run))
        for group in default_rate_limits():
            emulator.config.rate_limits[group] = self.rule
        method, pattern = stage_route(run)
        emulator.inject_fault(method, pattern, "status", count=2, status=429)
        run.notes["route"] = (method, pattern)
        if run.stage == "fanout":
            run.notes["ops_seen"] = len(run.ops.received)
            run.ops.statuses.extend([429, 429, 429])
            return
        calm = asyncio.Event()
        run.notes["calm"] = calm
        run.notes["tasks"] = [
            asyncio.create_task(self._report_storm(run, calm)),
            asyncio.create_task(self._competitor(run, calm)),
            asyncio.create_task(self._end_storm(run, calm)),
        ]
        # The stage meets a storm in full swing: it has already answered the bot a 429.
        await wait_until(
            lambda: len(_bot_429s(run)) > run.notes["bot_429s_before"], timeout_s=WAIT_S
        )

    async def _report_storm(self, run: CellRun, calm: asyncio.Event) -> None:
        steered = run.steered
        step = 0
        while not calm.is_set() and not steered.release.is_set():
            if steered.report is not None:
                step += 1
                steered.report(
                    stage="crunching", progress=min(0.99, step / 500), detail=f"storm {step}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(calm.wait(), 0.05)

    async def _competitor(self, run: CellRun, calm: asyncio.Event) -> None:
        """Other traffic on the interaction's token: reads of its status message."""
        emulator = run.emulator
        token = run.require_handle().token
        url = f"{emulator.api_base}/webhooks/{emulator.application_id}/{token}/messages/@original"
        async with aiohttp.ClientSession() as session:
            while not calm.is_set():
                async with session.get(url) as response:
                    await response.read()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(calm.wait(), 0.1)

    async def _end_storm(self, run: CellRun, calm: asyncio.Event) -> None:
        """Calm comes after `storm_answers` 429s to the bot, or once the workflow is delivered."""
        wanted = run.notes["bot_429s_before"] + self.storm_answers
        try:
            await wait_until(
                lambda: calm.is_set() or len(_bot_429s(run)) >= wanted, timeout_s=WAIT_S
            )
        finally:
            calm.set()
            run.emulator.config.rate_limits.update(default_rate_limits())
            run.emulator.reset_rate_limits()

    async def after_delivery(self, run: CellRun) -> None:
        if "calm" in run.notes:
            run.notes["calm"].set()
        for task in run.notes.get("tasks", []):
            await task
        run.emulator.config.rate_limits.update(default_rate_limits())
        run.emulator.reset_rate_limits()

    async def check(self, run: CellRun) -> None:
        if run.stage == "fanout":
            await run.wait_row("completed", status=OutboxStatus.SENT)
            statuses = [r.status for r in run.ops.received[run.notes["ops_seen"] :]]
            assert statuses == [429, 429, 429, 200], statuses
            await self.requester_dm_sent(run)
        method, pattern = run.notes["route"]
        injected = [
            r
            for r in run.emulator.requests
            if r.method == method and pattern.search(r.path) and r.fault
        ]
        if run.stage == "handoff":
            # The storm stalls the status edit that holds the ladder's lock, so the hand-off runs
            # late: the lease may refuse its retry (the token is at its end), never a dead call.
            assert 1 <= len(injected) <= 2
        else:
            assert len(injected) == 2
        if run.stage != "fanout":
            storm = _bot_429s(run)[run.notes["bot_429s_before"] :]
            assert storm
            assert all("retry_after" in (r.response or {}) for r in storm)
        assert run.token_calls_with_code(50027) == []

    async def cleanup(self, run: CellRun) -> None:
        calm = run.notes.get("calm")
        if calm is not None:
            calm.set()
        for task in run.notes.get("tasks", []):
            if not task.done():
                task.cancel()


def _bot_429s(run: CellRun) -> list[Any]:
    """Rate-limit answers of the emulator's buckets to the bot (not injected faults, not the
    competing reads)."""
    return [
        r for r in run.emulator.requests if r.status == 429 and not r.fault and r.method != "GET"
    ]


class ChannelForbidden(Fault):
    """The bot loses SEND_MESSAGES in the channel (403/50013) when the workflow has outlived its
    token, so the channel rung refuses and the DM rung carries on. At the fanout stage the user's
    DMs are closed too: no rung is left and the fanout carries the retrieval command."""

    name = "forbidden_50013"
    strike_after_defer = True

    async def configure(self, run: CellRun) -> None:
        if run.stage == "fanout":
            run.expected_rungs = {"none"}
            run.allowed_errors = [NO_RUNG]
            run.metrics = [
                ("notifier_notifications_sent_total", {"plugin": "apprise", "outcome": "sent"})
            ]
        else:
            run.expected_rungs = {"dm"}
            run.metrics = [("notifier_workflow_delivery_total", {"rung": "dm"})]

    async def strike(self, run: CellRun) -> None:
        run.emulator.forbid_channel(run.emulator.channel_id)
        if run.stage != "handoff":  # at the hand-off the ladder leaves the token by itself
            run.require_handle().expire()
        if run.stage == "fanout":
            run.emulator.close_dms(USER)

    async def check(self, run: CellRun) -> None:
        assert 50013 in codes_seen(run)
        if run.stage == "fanout":
            assert 50007 in codes_seen(run)
            await run.wait_row("persisted", status=OutboxStatus.SENT)


class DmsClosed(Fault):
    """The user closes their DMs (403/50007). A private workflow that outlived its token has no
    rung left: the result is persisted and the fanout says how to retrieve it. At the fanout stage
    the `dm` notifier meets the closed DMs (a permanent failure for that notifier only)."""

    name = "dms_closed_50007"
    strike_after_defer = True

    async def configure(self, run: CellRun) -> None:
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.expected_rungs = {"interaction"}
            run.allowed_errors = [r"to 'requester' failed: dm:\d+: failed .*\(code 50007\)"]
            run.metrics = [
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "failed"}),
                ("notifier_notifications_sent_total", {"plugin": "apprise", "outcome": "sent"}),
            ]
            return
        run.private = True
        run.expected_rungs = {"none"}
        run.allowed_errors = [NO_RUNG]
        run.metrics = [
            ("notifier_notifications_sent_total", {"plugin": "apprise", "outcome": "sent"})
        ]
        run.status_refused = lambda: 50007 in codes_seen(run)

    async def strike(self, run: CellRun) -> None:
        run.emulator.close_dms(USER)
        if run.stage not in ("handoff", "fanout"):
            run.require_handle().expire()

    async def check(self, run: CellRun) -> None:
        assert 50007 in codes_seen(run)
        if run.stage == "fanout":
            row = await run.wait_row("completed", "requester", status=OutboxStatus.FAILED)
            assert "50007" in (row.last_error or ""), row.last_error
            assert row.attempts == 1, "a closed DM is not retried"
            await run.wait_row("completed", status=OutboxStatus.SENT)
        else:
            await run.wait_row("persisted", status=OutboxStatus.SENT)
            # Nothing private leaked into the channel.
            public = [
                m
                for m in run.emulator.channel_messages(run.emulator.channel_id)
                if run.workflow_id in m.content + str(m.embeds) and not m.ephemeral
            ]
            assert public == []


class AttachmentTooLarge(Fault):
    """A result too big for embeds meets a small upload limit (16 KiB): announced with the
    interaction at the start stage (the renderer summarises at once), or shrinking later (Discord
    answers 413/40005 and the same rung gets the summary with the export command). At the error
    stage the failure's own report is huge."""

    name = "attachment_too_large"
    limit_bytes = 16 * 1024

    async def configure(self, run: CellRun) -> None:
        run.steered.result = big_result()
        if run.failed:
            run.steered.fail_with = "the analysed site answered with a huge error page: " + (
                "<div>server error</div>" * 1500
            )
        rung = "channel" if run.stage == "handoff" else "interaction"
        run.expected_rungs = {rung}
        run.metrics = [("notifier_workflow_delivery_total", {"rung": rung})]
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.metrics.append(
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "sent"})
            )

    async def strike(self, run: CellRun) -> None:
        run.emulator.config.attachment_size_limit = self.limit_bytes

    async def check(self, run: CellRun) -> None:
        record = await run.record()
        via = record.delivered_via or ""
        (delivered,) = [
            m for m in run.surfaces()[via] if run.told_text in m.content + str(m.embeds)
        ][-1:]
        assert all(a.size <= self.limit_bytes for a in delivered.attachments)
        if run.failed:
            return
        assert f"python -m notifier results export {run.workflow_id}" in (
            delivered.content + str(delivered.embeds)
        )
        if run.stage != "start":  # announced later than the upload was drawn: Discord refused it
            assert 40005 in codes_seen(run)
        if run.stage == "fanout":
            await self.requester_dm_sent(run)
            # The notices about a huge result stay small (the summary, not the result).
            await run.wait_row("completed", status=OutboxStatus.SENT)
            (notice,) = [b for b in run.ops.bodies() if b["title"] == "Completed: autointel"]
            assert len(str(notice)) < 2000, len(str(notice))
            assert "A result too big for any embed." in notice["message"]


class NotifierDown(Fault):
    """The ops json:// server goes down at the stage (connection refused). Its notice is kept in
    the outbox and retried; nothing else waits for it; when the server is back it is delivered."""

    name = "notifier_down"

    async def configure(self, run: CellRun) -> None:
        run.notes["event"] = STAGE_EVENT[run.stage]
        run.metrics = [
            ("notifier_notifications_sent_total", {"plugin": "apprise", "outcome": "retried"}),
            ("notifier_notifications_sent_total", {"plugin": "apprise", "outcome": "sent"}),
        ]
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.metrics.append(
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "sent"})
            )

    async def strike(self, run: CellRun) -> None:
        await run.ops.close()

    async def after_delivery(self, run: CellRun) -> None:
        await _discord_did_not_wait(run, "ops")
        await wait_until(lambda: _retried(run, run.notes["event"], "ops"), timeout_s=WAIT_S)
        if run.stage == "fanout":  # the other notifier was not held up by this one
            await run.wait_row("completed", "requester", status=OutboxStatus.SENT)
        await run.ops.start()  # back on the same port

    async def check(self, run: CellRun) -> None:
        row = await run.wait_row(run.notes["event"], status=OutboxStatus.SENT)
        assert row.attempts >= 2
        assert run.ops.bodies(run.workflow_id)


async def _discord_did_not_wait(run: CellRun, notifier: str) -> None:
    """The result's Discord delivery has settled (`drive` saw it) while the notice of the down
    notifier is still owed: the delivery did not wait for it."""
    row = await run.row_for(run.notes["event"], notifier)
    assert row is not None, "the notice was queued before the delivery"
    assert row.status is OutboxStatus.PENDING, row.status


async def _retried(run: CellRun, event: str, notifier: str) -> bool:
    row = await run.row_for(event, notifier)
    return (
        row is not None
        and row.status is OutboxStatus.PENDING
        and row.attempts >= 1
        and bool(row.last_error)
    )


class SmtpDown(Fault):
    """The SMTP server of an `email` notifier goes down at the stage: the mail is retried from the
    outbox, Discord delivery does not wait, and the mail goes out once the server is back."""

    name = "smtp_down"

    async def configure(self, run: CellRun) -> None:
        smtp = SmtpSink()
        await smtp.start()
        run.notes["smtp"] = smtp
        event = STAGE_EVENT[run.stage]
        run.notes["event"] = event
        run.add_notifier(
            {"name": "mail", "plugin": "email", "on": [event], "options": {"urls": [smtp.url()]}}
        )
        run.metrics = [
            ("notifier_notifications_sent_total", {"plugin": "email", "outcome": "retried"}),
            ("notifier_notifications_sent_total", {"plugin": "email", "outcome": "sent"}),
        ]
        if run.stage == "fanout":
            self.with_requester_dm(run)
            run.metrics.append(
                ("notifier_notifications_sent_total", {"plugin": "dm", "outcome": "sent"})
            )

    async def strike(self, run: CellRun) -> None:
        await run.notes["smtp"].stop()

    async def after_delivery(self, run: CellRun) -> None:
        await _discord_did_not_wait(run, "mail")
        await wait_until(lambda: _retried(run, run.notes["event"], "mail"), timeout_s=WAIT_S)
        if run.stage == "fanout":
            await run.wait_row("completed", "requester", status=OutboxStatus.SENT)
        await run.notes["smtp"].start()

    async def check(self, run: CellRun) -> None:
        row = await run.wait_row(run.notes["event"], "mail", status=OutboxStatus.SENT)
        assert row.attempts >= 2
        smtp: SmtpSink = run.notes["smtp"]
        subject = f"Subject: {EVENT_TITLE[run.notes['event']]}"
        await wait_until(lambda: any(subject in m["data"] for m in smtp.messages), timeout_s=WAIT_S)
        assert len(smtp.messages) == 1, "one notice, one mail: the failed tries sent nothing"

    async def cleanup(self, run: CellRun) -> None:
        smtp = run.notes.get("smtp")
        if smtp is not None:
            await smtp.stop()


class DiskFull(Fault):
    """The filesystem holding the result store fills up (a real, size-limited tmpfs). The result is
    kept in memory and served from there, the write is retried, `storage_error` reaches the ops
    sink; once space is freed the write lands on disk. At the fanout stage the outbox lives on the
    same full disk (its default place)."""

    name = "disk_full"
    size_bytes = 24 * 1024 * 1024

    async def configure(self, run: CellRun) -> None:
        disk = Tmpfs(run.tmp_path / "disk", self.size_bytes)
        try:
            disk.mount()
        except TmpfsUnavailable as exc:
            pytest.skip(f"disk full needs a real small filesystem: {exc}")
        run.notes["disk"] = disk
        run.data_dir = disk.path / "data"
        run.overrides["storage"]["path"] = str(run.data_dir)
        if run.stage != "fanout":
            run.overrides["fanout"]["outbox_path"] = str(run.tmp_path / "outbox.sqlite3")
        run.metrics = [("notifier_store_write_failures_total", {"error": "ENOSPC"})]
        run.allowed_errors = [
            r"result not written \(ENOSPC",
            r"not indexed either: .*(full|disk)",
            r"delivery state not recorded: .*(full|disk)",
            r"not indexed as running: .*(full|disk)",
            r"outbox not written \(outbox write failed: database or disk is full\)",
        ]
        rung = "channel" if run.stage == "handoff" else "interaction"
        run.expected_rungs = {rung}

    async def strike(self, run: CellRun) -> None:
        disk: Tmpfs = run.notes["disk"]
        await asyncio.to_thread(disk.fill)

    async def after_delivery(self, run: CellRun) -> None:
        bot = run.require_bot()
        assert run.workflow_id in bot.store.pending_writes, "the result must wait in memory"
        assert not (run.data_dir / "results" / f"{run.workflow_id}.json").exists()
        if run.stage == "fanout":
            # The outbox shares the full disk: the notices wait in memory, nothing is sent yet.
            assert run.logs.contains(r"storage_error of workflow \w+ for 'ops' held in memory")
            assert not [t for t in run.ops.titles(run.workflow_id) if "torage" in t]
        else:
            await self._storage_error_noticed(run)

    async def _storage_error_noticed(self, run: CellRun) -> None:
        await run.wait_row("storage_error", status=OutboxStatus.SENT)
        assert any("torage" in t for t in run.ops.titles(run.workflow_id)), run.ops.received

    async def before_cli(self, run: CellRun) -> None:
        # /retrieve_results was served from memory; now space comes back and the write lands.
        disk: Tmpfs = run.notes["disk"]
        bot = run.require_bot()
        before = MetricSnapshot.take()
        await asyncio.to_thread(disk.free)
        await wait_until(lambda: run.workflow_id not in bot.store.pending_writes, timeout_s=WAIT_S)
        assert (run.data_dir / "results" / f"{run.workflow_id}.json").exists()
        reason = "failed" if run.failed else "completed"
        assert (
            MetricSnapshot.take().moved(
                before, "notifier_workflow_results_persisted_total", reason=reason
            )
            == 1
        )
        if run.stage == "fanout":  # the held notices are queued and sent now
            await self._storage_error_noticed(run)
            await run.wait_row("completed", status=OutboxStatus.SENT)

    async def cleanup(self, run: CellRun) -> None:
        disk = run.notes.get("disk")
        if disk is not None:
            disk.unmount()


FAULT_CLASSES: list[type[Fault]] = [
    TokenExpired,
    SessionClosed,
    GatewayResumed,
    ServerErrorBurst,
    RateLimitStorm,
    ChannelForbidden,
    DmsClosed,
    AttachmentTooLarge,
    NotifierDown,
    SmtpDown,
    DiskFull,
]
FAULTS: dict[str, type[Fault]] = {cls.name: cls for cls in FAULT_CLASSES}
