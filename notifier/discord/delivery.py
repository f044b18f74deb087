"""The delivery ladder: how progress, results and errors reach the person who asked.

Theory of operation
-------------------
A workflow's messages climb down a ladder of rungs, always using the highest one that still works:

1. ``interaction`` — the interaction webhook: edits of the deferred ("thinking") message for
   progress, followups for results. Only while the token's lease is usable.
2. Hand-off — while the token still works, `handoff_before_s` before it expires, one followup tells
   the user where the rest will arrive (channel or DM), with the workflow id and `/retrieve_results`.
   The lease is then retired: nothing is ever sent with a token known to be dead.
3. ``channel`` — a message in the target's channel with the bot token (no 15-minute limit), then
   edits of it. That is the command's channel, or the workflow's results channel when the operator
   set one (`workflows.<name>.results_channel_id`, resolved by the runner: `DeliveryTarget`).
   Sends carry `nonce` + `enforce_nonce`, so a retried send cannot post twice. Never used for an
   ephemeral interaction: its content must stay private.
4. ``dm`` — the same in a DM with the user.
5. Attachments — the renderer decides (embeds, or a short embed plus files within the interaction's
   `attachment_size_limit`); if Discord still refuses the body (50035 / 40005) the same rung is
   tried once more with the summary-only fallback.
6. ``none`` — every rung failed: the result is in the store (it was written before any of this) and
   the runner tells the notifier fanout, with the retrieval command.

Which rung to use is a pure function of the ladder's state (`choose_rung`), tested as a table. A
rung is marked failed only by a failure that belongs to it (a dead token, 50013 in the channel, 50007
for DMs); a closed session or a burst of 5xx says nothing about the rung, so the next rung is tried
this time and the first one is tried again next time. All Discord calls of one workflow are
serialised by a lock, so a progress edit can never overtake the result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from loguru import logger

from ..errors import DiscordCallFailed
from ..events import Event
from ..metrics import WORKFLOW_DELIVERY
from . import codes
from .io import DiscordIO, OutgoingMessage
from .session import FailureKind, InteractionLease, call_discord

__all__ = [
    "Delivery",
    "DeliveryTarget",
    "LadderState",
    "Rung",
    "choose_rung",
    "send_notice_dm",
]


class Rung(StrEnum):
    INTERACTION = "interaction"
    CHANNEL = "channel"
    DM = "dm"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class LadderState:
    """What the rung choice depends on, and nothing else."""

    interaction_usable: bool
    ephemeral: bool
    has_channel: bool
    failed: frozenset[Rung] = frozenset()
    skip: frozenset[Rung] = frozenset()


def choose_rung(state: LadderState) -> Rung:
    """The highest rung that may be used now."""
    unavailable = state.failed | state.skip
    if state.interaction_usable and Rung.INTERACTION not in unavailable:
        return Rung.INTERACTION
    if not state.ephemeral and state.has_channel and Rung.CHANNEL not in unavailable:
        return Rung.CHANNEL
    if Rung.DM not in unavailable:
        return Rung.DM
    return Rung.NONE


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """Where a workflow's messages may go. `token` is None when there is no interaction (a result
    delivered after a restart). `channel_id` is the channel rung's channel: the command's, or the
    workflow's results channel (`notifier.runner.results_channel`); the ladder never posts a
    private run in any channel."""

    workflow_id: str
    user_id: int
    channel_id: int | None
    ephemeral: bool
    token: str | None = None
    attachment_limit_bytes: int = codes.ATTACHMENT_SIZE_DEFAULT_BYTES


EventHook = Callable[[Event, str], Awaitable[None]]

# Failures that say the rung itself can not be used for this workflow.
_RUNG_FAILURES = frozenset(
    {FailureKind.PERMANENT, FailureKind.TOKEN_EXPIRED, FailureKind.UNEXPECTED}
)
_BODY_REFUSED = frozenset({codes.INVALID_FORM_BODY, codes.REQUEST_ENTITY_TOO_LARGE})


class Delivery:
    """The ladder for one workflow: progress edits, the hand-off, results and error reports."""

    def __init__(
        self,
        io: DiscordIO,
        target: DeliveryTarget,
        lease: InteractionLease | None,
        *,
        on_event: EventHook | None = None,
        call_timeout_s: float = 20.0,
    ) -> None:
        self._io = io
        self.target = target
        self.lease = lease
        self._on_event = on_event
        self._call_timeout_s = call_timeout_s
        self._lock = asyncio.Lock()
        self._failed: set[Rung] = set()
        self._status_messages: dict[Rung, tuple[int, int]] = {}  # rung -> (channel, message)
        self._sends = 0
        self.handed_off = False
        self.last_rung: Rung = Rung.NONE

    # -- state ---------------------------------------------------------------------------------

    @property
    def interaction_usable(self) -> bool:
        return (
            self.target.token is not None
            and self.lease is not None
            and self.lease.usable
            and not self.handed_off
            and not self._io.client_closed
        )

    def state(self, skip: frozenset[Rung] = frozenset()) -> LadderState:
        return LadderState(
            interaction_usable=self.interaction_usable,
            ephemeral=self.target.ephemeral,
            has_channel=self.target.channel_id is not None,
            failed=frozenset(self._failed),
            skip=skip,
        )

    @property
    def rung(self) -> Rung:
        return choose_rung(self.state())

    @property
    def shows_status(self) -> bool:
        """Whether the user has a status message to update on the current rung: the
        interaction's own message, or one posted on the channel or in the DM."""
        rung = self.rung
        return rung is Rung.INTERACTION or rung in self._status_messages

    def next_rung_after_handoff(self) -> Rung:
        return choose_rung(
            LadderState(
                interaction_usable=False,
                ephemeral=self.target.ephemeral,
                has_channel=self.target.channel_id is not None,
                failed=frozenset(self._failed),
            )
        )

    async def _emit(self, event: Event, detail: str) -> None:
        if self._on_event is not None:
            await self._on_event(event, detail)

    # -- the hand-off --------------------------------------------------------------------------

    async def handoff_if_due(self, notice: Callable[[Rung], OutgoingMessage]) -> bool:
        """Post the hand-off once, while the token still works, when its time has come.

        `notice(next_rung)` builds the message (it names where the rest will arrive).
        """
        async with self._lock:
            return await self._handoff_locked(notice)

    async def _handoff_locked(self, notice: Callable[[Rung], OutgoingMessage]) -> bool:
        lease = self.lease
        if self.handed_off or lease is None or self.target.token is None:
            return False
        if not lease.handoff_due:
            return False
        next_rung = self.next_rung_after_handoff()
        if lease.usable and Rung.INTERACTION not in self._failed:
            message = replace(notice(next_rung), ephemeral=self.target.ephemeral)
            try:
                await self._call(
                    lambda: self._io.followup(self.target.token or "", message),
                    stage="handoff",
                    token=True,
                )
            except DiscordCallFailed as exc:
                # Like any other call: a dead token found here is a lost session (operators
                # hear of it); the rest continues on `next_rung` all the same.
                await self._on_failure(Rung.INTERACTION, exc, "handoff")
        self.handed_off = True
        lease.retire("handed off")
        logger.info("workflow {}: handed off to {}", self.target.workflow_id, next_rung.value)
        await self._emit(Event.HANDOFF, next_rung.value)
        return True

    async def watch_handoff(self, notice: Callable[[Rung], OutgoingMessage]) -> None:
        """Sleep until the hand-off is due, then do it: a workflow that reports no progress
        still hands off in time."""
        lease = self.lease
        if lease is None or self.target.token is None:
            return
        delay_s = lease.remaining_s() - lease.handoff_before_s - lease.safety_margin_s
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        await self.handoff_if_due(notice)

    # -- calls ---------------------------------------------------------------------------------

    async def _call[T](
        self, operation: Callable[[], Awaitable[T]], *, stage: str, token: bool
    ) -> T:
        return await call_discord(
            operation,
            stage=stage,
            lease=self.lease if token else None,
            timeout_s=self._call_timeout_s,
        )

    def _nonce(self, kind: str) -> str:
        self._sends += 1
        return f"{kind}{self.target.workflow_id[:20]}{self._sends:x}"[:25]

    async def _on_failure(self, rung: Rung, exc: DiscordCallFailed, stage: str) -> None:
        logger.warning(
            "workflow {}: {} on the {} rung failed: {} ({})",
            self.target.workflow_id,
            stage,
            rung.value,
            exc.kind,
            exc,
        )
        if exc.kind in _RUNG_FAILURES:
            self._failed.add(rung)
        if rung is Rung.INTERACTION and exc.kind is FailureKind.TOKEN_EXPIRED:
            await self._emit(Event.SESSION_LOST, f"interaction token: {exc}")

    async def _send_on(self, rung: Rung, message: OutgoingMessage, stage: str) -> int:
        target = self.target
        if rung is Rung.INTERACTION:
            private = replace(message, ephemeral=target.ephemeral)
            return await self._call(
                lambda: self._io.followup(target.token or "", private), stage=stage, token=True
            )
        channel_id = await self._channel_for(rung, stage)
        nonce = self._nonce(stage[0])
        public = replace(message, ephemeral=False)
        return await self._call(
            lambda: self._io.channel_send(channel_id, public, nonce=nonce), stage=stage, token=False
        )

    async def _channel_for(self, rung: Rung, stage: str) -> int:
        if rung is Rung.CHANNEL:
            assert self.target.channel_id is not None  # choose_rung guarantees it
            return self.target.channel_id
        return await self._call(
            lambda: self._io.dm_channel(self.target.user_id), stage=stage, token=False
        )

    async def whisper(self, message: OutgoingMessage, *, stage: str) -> bool:
        """A followup for the asker's eyes only (e.g. the timeout warning), while the token works.

        Not worth a rung of its own: if the interaction is gone, the message is skipped.
        """
        async with self._lock:
            if not self.interaction_usable or Rung.INTERACTION in self._failed:
                return False
            private = replace(message, ephemeral=True)
            try:
                await self._call(
                    lambda: self._io.followup(self.target.token or "", private),
                    stage=stage,
                    token=True,
                )
            except DiscordCallFailed as exc:
                await self._on_failure(Rung.INTERACTION, exc, stage)
                return False
            return True

    # -- progress ------------------------------------------------------------------------------

    async def show_progress(
        self, message: OutgoingMessage, handoff_notice: Callable[[Rung], OutgoingMessage]
    ) -> Rung:
        """Show progress in the one status message of the current rung, edited in place."""
        async with self._lock:
            await self._handoff_locked(handoff_notice)
            tried: set[Rung] = set()
            while (rung := choose_rung(self.state(frozenset(tried)))) is not Rung.NONE:
                tried.add(rung)
                try:
                    await self._show_on(rung, message)
                except DiscordCallFailed as exc:
                    await self._on_failure(rung, exc, "progress")
                    continue
                self.last_rung = rung
                return rung
            return Rung.NONE

    async def _show_on(self, rung: Rung, message: OutgoingMessage) -> None:
        target = self.target
        if rung is Rung.INTERACTION:
            await self._call(
                lambda: self._io.edit_original(target.token or "", message),
                stage="progress",
                token=True,
            )
            return
        existing = self._status_messages.get(rung)
        if existing is not None:
            channel_id, message_id = existing
            try:
                await self._call(
                    lambda: self._io.channel_edit(channel_id, message_id, message),
                    stage="progress",
                    token=False,
                )
                return
            except DiscordCallFailed as exc:
                if exc.kind is not FailureKind.MESSAGE_GONE:
                    raise
                # The user deleted the status message (or it is too old to edit): post a new one.
                del self._status_messages[rung]
        channel_id = await self._channel_for(rung, "progress")
        message_id = await self._send_on(rung, message, "progress")
        self._status_messages[rung] = (channel_id, message_id)

    # -- results and errors --------------------------------------------------------------------

    async def deliver(
        self,
        message: OutgoingMessage,
        *,
        fallback: OutgoingMessage | None = None,
        stage: str = "result",
        handoff_notice: Callable[[Rung], OutgoingMessage] | None = None,
    ) -> Rung:
        """Send a result or an error report down the ladder; return the rung that carried it.

        Never raises for a Discord failure: the error path must not cascade. `fallback` (a short
        summary) is tried on the same rung when Discord refuses the body itself.
        """
        async with self._lock:
            if handoff_notice is not None:
                await self._handoff_locked(handoff_notice)
            tried: set[Rung] = set()
            while (rung := choose_rung(self.state(frozenset(tried)))) is not Rung.NONE:
                tried.add(rung)
                body = self._addressed(rung, message)
                try:
                    await self._send_with_fallback(rung, body, fallback, stage)
                except DiscordCallFailed as exc:
                    await self._on_failure(rung, exc, stage)
                    continue
                self.last_rung = rung
                WORKFLOW_DELIVERY.labels(rung=rung.value).inc()
                logger.info(
                    "workflow {}: {} delivered on the {} rung",
                    self.target.workflow_id,
                    stage,
                    rung.value,
                )
                return rung
            logger.error(
                "workflow {}: {} could not be delivered on any rung; it stays in the store",
                self.target.workflow_id,
                stage,
            )
            return Rung.NONE

    async def _send_with_fallback(
        self, rung: Rung, message: OutgoingMessage, fallback: OutgoingMessage | None, stage: str
    ) -> None:
        try:
            await self._send_on(rung, message, stage)
        except DiscordCallFailed as exc:
            if fallback is None or exc.code not in _BODY_REFUSED:
                raise
            logger.warning(
                "workflow {}: Discord refused the {} body ({}); sending the summary instead",
                self.target.workflow_id,
                stage,
                exc.code,
            )
            await self._send_on(rung, self._addressed(rung, fallback), stage)

    def _addressed(self, rung: Rung, message: OutgoingMessage) -> OutgoingMessage:
        """In a channel, a result names (and pings) the person who asked; the interaction and a
        DM are already theirs."""
        if rung is not Rung.CHANNEL:
            return message
        mention = f"<@{self.target.user_id}>"
        content = f"{mention} {message.content or ''}".strip()
        return replace(message, content=content, mention_user_id=self.target.user_id)


async def send_notice_dm(
    io: DiscordIO,
    user_id: int,
    content: str,
    embed: dict[str, Any] | None,
    *,
    nonce: str | None = None,
) -> None:
    """DM a user (the `dm` notifier plugin's transport, in a bot or a worker). The fanout's nonce
    is the same on every retry of one notice, so `enforce_nonce` keeps a retry from posting
    twice."""
    channel_id = await call_discord(lambda: io.dm_channel(user_id), stage="notifier")
    message = OutgoingMessage(content=content, embeds=[embed] if embed else ())
    nonce = nonce or f"n{user_id}{int(time.time() * 1000)}"[-25:]
    await call_discord(lambda: io.channel_send(channel_id, message, nonce=nonce), stage="notifier")
