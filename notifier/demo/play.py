"""`notifier demo --workflow NAME --option k=v`: one run of any workflow the bot discovers, told
the way the story is told.

alice runs `/NAME` with the given options in #general; every line of the timeline comes from
something observed at that moment in the emulator, the store, the SMTP sink or the incoming
webhook of #ops: the deferral, the row stored as running, the private timeout warning (if the
estimate is long), progress (on the interaction, then where the hand-off sent it), the hand-off
and the token's expiry (if the run outlasts the token), the result persisted, where it was
delivered, and the notices operators got. Nothing here knows any workflow: the options are the
ones the workflow declares, typed as its command types them (`notifier.demo.run` checks them
before anything starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import DeliveryState, WorkflowRecord, WorkflowStatus
from ..store import ResultQuery
from ..testing import DiscordEmulator, InteractionHandle, Message
from .smtp import SmtpSink
from .story import (
    ESTIMATE,
    Timeline,
    continues,
    embed_text,
    message_parts,
    poll_until,
    progress_of,
    shown,
    stored_outcome,
    title_of,
    within,
)

if TYPE_CHECKING:
    from ..app import NotifierBot

__all__ = ["PlayFacts", "PlayRefused", "PlayStalled", "WorkflowPlay"]

_POLL_S = 0.1


class PlayStalled(Exception):
    """A step of the run did not happen within its limit."""


class PlayRefused(Exception):
    """The bot refused to start the workflow (its validation, or a limit): the reply says why."""


@dataclass
class PlayFacts:
    """What the summary reports, filled in as the run goes."""

    workflow_id: str = ""
    record: WorkflowRecord | None = None
    handoff_left_s: float | None = None
    calls_after_expiry: int = 0
    emails: int = 0
    webhook_posts: int = 0
    notices_pending: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        """The run completed and its result reached alice on Discord."""
        record = self.record
        return (
            record is not None
            and record.status is WorkflowStatus.COMPLETED
            and record.delivery_state is DeliveryState.DELIVERED
        )


class WorkflowPlay:
    """Runs `/command` as alice against the running bot and tells what happens."""

    def __init__(
        self,
        *,
        emulator: DiscordEmulator,
        bot: NotifierBot,
        command: str,
        options: Mapping[str, Any],
        smtp: SmtpSink,
        ops_webhook_id: int,
        store_path: Path,
        timeline: Timeline,
        step_limit_s: float,
    ) -> None:
        self.emulator = emulator
        self.bot = bot
        self.command = command
        self.options = dict(options)
        self.smtp = smtp
        self.ops_webhook_id = ops_webhook_id
        self.store_path = store_path
        self.timeline = timeline
        self.say = timeline.say
        self.step_limit_s = step_limit_s
        self.facts = PlayFacts()
        self._handed_off_to = ""
        self._progress_place = ""
        self._progress_bucket = -1
        self._seen_ops: set[int] = set()
        self._seen_mail = 0
        self._warned = False
        self._told_expiry = False
        self._told_handoff = False

    @property
    def ttl_s(self) -> float:
        return self.emulator.config.interaction_ttl_s

    @property
    def alice_id(self) -> int:
        return self.emulator.users["alice"].id

    @property
    def private(self) -> bool:
        return bool(self.options.get("private", False))

    async def _step[T](self, what: str, waiting: Awaitable[T], limit_s: float | None) -> T:
        return await within(what, waiting, limit_s, PlayStalled)

    async def _until[T](self, probe: Callable[[], Awaitable[T | None]]) -> T:
        return await poll_until(probe)

    # -- the run -------------------------------------------------------------------------------

    async def play(self) -> PlayFacts:
        given = " ".join(f"{k}:{_option_text(v)}" for k, v in self.options.items())
        self.timeline.line(f"alice runs /{self.command}{' ' + given if given else ''}")
        self.timeline.start()
        handle = await self.emulator.trigger_command(self.command, self.options, user="alice")
        watcher = asyncio.create_task(self._watch(handle), name="demo-watch")
        try:
            await self._started(handle)
            record = await self._finished()
            await self._delivered(handle, record)
            await self._notices()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        self._look(handle)  # what arrived since the watcher's last look
        self.facts.calls_after_expiry = self._calls_after_expiry(handle)
        return self.facts

    async def _started(self, handle: InteractionHandle) -> None:
        kind = await self._step("the initial response", handle.wait_for_response(), 10)
        delay_ms = (handle.response_delay_s or 0.0) * 1000
        what = "deferred" + (" (privately)" if kind == 5 and self.private else "")
        self.say(
            f"/{self.command} {what if kind == 5 else f'answered (type {kind})'}, "
            f"{delay_ms:.0f} ms after the command; Discord allows 3 s"
        )

        async def stored_or_refused() -> WorkflowRecord | Message | None:
            for message in handle.messages:
                if "❌" in message.content:
                    return message
            records = await self.bot.store.search(
                ResultQuery(user_id=self.alice_id, command=self.command)
            )
            return records[0] if records else None

        found: WorkflowRecord | Message = await self._step(
            "the workflow's row in the store", self._until(stored_or_refused), self.step_limit_s
        )
        if isinstance(found, Message):
            reason = found.content.replace("❌", "").strip()
            self.say(f"refused, privately: {shown(reason, 200)}")
            raise PlayRefused(reason)
        self.facts.workflow_id = found.workflow_id
        self.say(f"workflow {found.workflow_id} stored as running, started in the background")

    async def _finished(self) -> WorkflowRecord:
        """The outcome, once durable (no limit: a workflow takes as long as it takes; Ctrl-C
        stops the demo and removes its folder)."""
        store = self.bot.store
        workflow_id = self.facts.workflow_id
        record = await self._step(
            "the result being stored", self._until(lambda: stored_outcome(store, workflow_id)), None
        )
        size = f"{record.size_bytes:,} bytes" if record.size_bytes is not None else "size unknown"
        name = Path(str(record.path)).name
        self.say(
            f"result persisted: {record.status.value}, results/{name} ({size}), before any delivery"
        )
        if record.status is not WorkflowStatus.COMPLETED:
            self.say(f"the workflow {record.status.value}: {shown(record.error or '?', 200)}")
        return record

    async def _delivered(self, handle: InteractionHandle, record: WorkflowRecord) -> None:
        store = self.bot.store

        async def decided() -> WorkflowRecord | None:
            current = await store.get(record.workflow_id)
            if current is None or current.delivery_state is DeliveryState.PENDING:
                return None
            return current

        settled = await self._step("the result's delivery", self._until(decided), self.step_limit_s)
        self.facts.record = settled
        self._look(handle)
        what = "result" if settled.status is WorkflowStatus.COMPLETED else "outcome"
        if settled.delivery_state is not DeliveryState.DELIVERED:
            self.say(
                f"{what} could not be delivered on Discord: it stays in the store "
                f"(/retrieve_results workflow_id:{settled.workflow_id})"
            )
            return
        via = settled.delivered_via or "?"
        if via == "channel":
            message = self._last(
                self.emulator.channel_messages(include_deleted=False),
                lambda m: m.interaction_id is None and f"<@{self.alice_id}>" in m.content,
            )
            where = "in #general with the bot token, mentioning alice"
        elif via == "dm":
            message = self._last(self.emulator.dm_messages("alice", include_deleted=False))
            where = "by DM to alice (bot token)"
        else:
            message = self._last(
                handle.followups, lambda m: "Still working" not in m.content and bool(m.embeds)
            )
            where = "as the command's reply (interaction token" + (
                ", only alice sees it)" if self.private else ")"
            )
        parts = f" ({message_parts(message)})" if message is not None else ""
        self.say(f"{what} delivered {where}{parts}")

    async def _notices(self) -> None:
        """Wait until the fanout settled every notice about this run (sent, skipped or failed),
        so the timeline shows what operators got."""
        outbox = self.bot.fanout.outbox
        workflow_id = self.facts.workflow_id

        async def settled() -> bool | None:
            rows = [r for r in await outbox.rows(limit=None) if r.workflow_id == workflow_id]
            self.facts.notices_pending = sum(1 for r in rows if r.status.value == "pending")
            return True if self.facts.notices_pending == 0 else None

        try:
            await self._step("the notices to operators", self._until(settled), self.step_limit_s)
        except PlayStalled as exc:
            self.say(f"{exc}: {self.facts.notices_pending} still pending (retried later)")

    # -- what alice and the operators see ------------------------------------------------------

    async def _watch(self, handle: InteractionHandle) -> None:
        while True:
            self._look(handle)
            await asyncio.sleep(_POLL_S)

    def _look(self, handle: InteractionHandle) -> None:
        """One look at everything the timeline tells as it happens (each told once)."""
        self._look_warning(handle)
        self._look_handoff(handle)
        self._look_progress(handle)
        self._look_expiry(handle)
        self._look_ops()
        self._look_mail()

    def _look_warning(self, handle: InteractionHandle) -> None:
        if self._warned:
            return
        for message in handle.followups:
            if message.ephemeral and "Long workflow" in embed_text(message):
                self._warned = True
                estimate = ESTIMATE.search(embed_text(message))
                length = estimate.group(1) if estimate else "longer than the token lives"
                self.say(
                    f"timeout warning shown privately to alice: estimated {length}, "
                    f"the token lives {self.ttl_s:.0f} s here (15 min on Discord)"
                )

    def _look_handoff(self, handle: InteractionHandle) -> None:
        if self._told_handoff:
            return
        for message in handle.followups:
            if "Still working" not in message.content:
                continue
            self._told_handoff = True
            posts = [
                r.at
                for r in self.emulator.requests
                if r.method == "POST"
                and handle.token in r.path
                and isinstance(r.response, dict)
                and str(r.response.get("id")) == str(message.id)
            ]
            left = handle.record.created_at + self.ttl_s - posts[0] if posts else None
            self.facts.handoff_left_s = left
            when = f"while the token had {left:.1f} s left" if left is not None else "in time"
            self._handed_off_to = "dm" if "by DM" in message.content else "channel"
            text = continues(message.content, self.emulator)
            self.say(f'hand-off posted {when}: "...{text}"')

    def _look_progress(self, handle: InteractionHandle) -> None:
        """The status message's progress as alice sees it: each 20 %, and where it is."""
        workflow_id = self.facts.workflow_id
        if not workflow_id:
            return
        if self._handed_off_to == "channel":
            place = "channel"
            status = self._last(
                self.emulator.channel_messages(include_deleted=False),
                lambda m: m.interaction_id is None and progress_of(m, workflow_id) is not None,
            )
        elif self._handed_off_to == "dm":
            place = "dm"
            status = self._last(
                self.emulator.dm_messages("alice", include_deleted=False),
                lambda m: progress_of(m, workflow_id) is not None,
            )
        else:
            place, status = "interaction", handle.original
        progress = progress_of(status, workflow_id)
        if progress is None or progress.percent >= 100:
            return
        bucket = progress.percent // 20
        if place == self._progress_place and bucket == self._progress_bucket:
            return
        line = f"progress {progress.percent}%: {progress.stage}"
        if progress.detail:
            line += f", {progress.detail}"
        if place != self._progress_place:
            line += {
                "interaction": " (editing the 'thinking' message with the interaction token)",
                "channel": " (now a status message in #general, edited with the bot token)",
                "dm": " (now a status message in alice's DMs, edited with the bot token)",
            }[place]
        self._progress_place, self._progress_bucket = place, bucket
        self.say(line)

    def _look_expiry(self, handle: InteractionHandle) -> None:
        if self._told_expiry or not handle.expired:
            return
        self._told_expiry = True
        self.say(
            "interaction token expired (Discord would now answer 401, code 50027); "
            f"calls made with it since: {self._calls_after_expiry(handle)}"
        )

    def _look_ops(self) -> None:
        for message in self.emulator.webhook_messages(self.ops_webhook_id):
            if message.id in self._seen_ops:
                continue
            self._seen_ops.add(message.id)
            self.facts.webhook_posts += 1
            self.say(f'webhook received in #ops: "{shown(title_of(message), 70)}"')

    def _look_mail(self) -> None:
        mails = self.smtp.messages
        for mail in mails[self._seen_mail :]:
            self.facts.emails += 1
            to = ", ".join(mail.rcpt_tos)
            self.say(f'email received by {to}: subject "{shown(mail.subject, 80)}"')
        self._seen_mail = len(mails)

    def _calls_after_expiry(self, handle: InteractionHandle) -> int:
        expiry = handle.record.created_at + self.ttl_s
        return sum(1 for r in self.emulator.requests if handle.token in r.path and r.at > expiry)

    @staticmethod
    def _last(
        messages: list[Message], predicate: Callable[[Message], bool] | None = None
    ) -> Message | None:
        found = [m for m in messages if not m.loading and (predicate is None or predicate(m))]
        return found[-1] if found else None


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def play_summary(facts: PlayFacts, *, command: str, ttl_s: float, requests: list[Any]) -> list[str]:
    """The closing summary of one run, from what was observed."""
    record = facts.record
    duration = f"{record.duration_s:.0f} s" if record and record.duration_s is not None else "?"
    errors = sum(1 for r in requests if r.status is not None and r.status >= 400)
    status = record.status.value if record else "?"
    via = record.delivered_via if record and record.delivered_via else None
    delivered = {
        "channel": "in #general (bot token)",
        "dm": "by DM (bot token)",
        "interaction": "as the command's reply (interaction token)",
    }.get(via or "", "not on Discord (it stays in the store)")
    handoff = (
        f"handed off {facts.handoff_left_s:.0f} s before the token expired"
        if facts.handoff_left_s is not None
        else "finished within the token's life: no hand-off"
    )
    pending = f", {facts.notices_pending} still pending" if facts.notices_pending else ""
    return [
        "Summary",
        f"  /{command} ran {duration} ({status}); its interaction token lived {ttl_s:.0f} s.",
        f"  - {handoff}; calls made with the expired token: {facts.calls_after_expiry}",
        f"  - delivered: {delivered}",
        f"  - operators told: {facts.emails} e-mail(s), {facts.webhook_posts} webhook post(s) "
        f"in #ops{pending}",
        f"  Discord API requests: {len(requests)} ({errors} answered with an error)",
    ]
