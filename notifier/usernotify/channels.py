"""Users' own channels in the fanout: three plugins (``user_dm``, ``user_email``, ``user_webhook``)
and `UserChannels`, the `UserRoutes` the fanout asks which of them a notice goes to.

A user's notice takes the operators' path (`notifier.fanout.user_routes`): `route` picks the
channels, the fanout writes one outbox row per channel, and the channel's plugin sends it with the
fanout's retries and idempotency key. What a plugin sends to is read from the settings store at
send time, never copied into the row: a channel turned off, changed or forgotten while a row
waits is honoured by the row's next attempt (gone or off: the row is skipped).

The message is the fanout's rendering of `USER_TEMPLATES` (the user's own words: "your autointel
finished"), so every outside field (a page title in the summary) is made inert exactly as for
operators' notifiers.

When a channel cannot work any more it is turned off, and the user is told:

- e-mail: the server refused the address (SMTP 5xx). The channel goes off with the server's
  words, the user is DMed; if the DM fails too, a note waits for their next command.
- DM: Discord will not let the bot DM them (50007, or 50278 no shared server). Off, and a note
  (a DM cannot carry the news).
- webhook: every failed attempt counts (`record_failure`), a delivered one resets the count;
  at ``user_notifications.webhook_max_failures`` in a row the callback goes off, DM or note.

Turning a channel off makes the attempt permanent (`PermanentSendError`): the row stops retrying.

No e-mail address reaches a log line: what is logged here, and the SendError texts the fanout
logs and keeps in the outbox, go through `mask_addresses_in` (a mail server's words quote
addresses, not always spelt as the bot sent them). What the user is told keeps the server's
words as they are: it is their own address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NoReturn

from loguru import logger
from pydantic import BaseModel, ConfigDict

from ..config import USER_EVENTS, NotifierEntry, NotifierFilter, Settings
from ..discord import codes
from ..errors import NotifierError
from ..events import Event, Notice
from ..fanout.dispatch import Notifier
from ..fanout.plugin import (
    PermanentSendError,
    Plugin,
    PluginContext,
    RenderedNotice,
    SendOutcome,
    TargetResult,
    TargetStatus,
    TransientSendError,
)
from ..fanout.templates import MessageTemplate
from ..fanout.transports.common import discord_embed, mask_url, target_id, target_timeout_s
from ..fanout.transports.dm import PERMANENT_DM_CODES, accepts_nonce, dm_nonce
from ..fanout.user_routes import USER_NOTIFIER_PREFIX
from ..logs import redactor
from ..metrics import USER_NOTIFICATIONS
from ..store import Store
from ..store.user_settings import ChannelSetting, UserSettings, UserSettingsStore, mask_address
from ..workflows.netguard import Resolver
from .mailer import MailFailed, MailRefused, MailServer, send_mail
from .verification import mask_addresses_in
from .webhook import CallbackFailed, CallbackSender, callback_body, signed_headers, webhook_id

__all__ = [
    "USER_TEMPLATES",
    "VIAS",
    "ResultLoader",
    "UserChannels",
    "UserDMPlugin",
    "UserEmailPlugin",
    "UserWebhookPlugin",
    "notifier_name",
    "stored_result_loader",
    "utc_day",
]

#: Every kind of channel a user may choose, in the order they are shown.
VIAS: Final = ("dm", "email", "webhook")
#: Seconds a DM telling the user that a channel went off may take before a note is left instead.
TELL_DM_TIMEOUT_S: Final = 10.0

#: The stored result of a workflow by id (None when there is none): for webhook bodies with
#: ``webhook_include_result``. The app and workers pass `stored_result_loader`'s.
type ResultLoader = Callable[[str], Awaitable[Any]]


def stored_result_loader(store: Store) -> ResultLoader:
    """What a user's webhook callback carries as its result (``webhook_include_result``): the
    stored document's result, or None when there is none to read (a test notice, a lost file)."""

    async def stored_result(workflow_id: str) -> Any:
        try:
            return (await store.read_result(workflow_id)).get("result")
        except NotifierError as exc:
            logger.debug("no stored result for a callback of {}: {}", workflow_id, exc)
            return None

    return stored_result


_T = MessageTemplate
USER_TEMPLATES: Mapping[Event, MessageTemplate] = {
    Event.COMPLETED: _T(
        "Your {command} workflow finished",
        "Workflow {workflow_id} completed. {summary}\nGet the result with {retrieval_command}",
    ),
    Event.FAILED: _T(
        "Your {command} workflow failed",
        "Workflow {workflow_id} failed: {error}\nDetails: {retrieval_command}",
    ),
    Event.PERSISTED: _T(
        "Your {command} result is saved",
        "The result of workflow {workflow_id} could not be shown on Discord; it is stored. "
        "Get it with {retrieval_command}",
    ),
    Event.HANDOFF: _T(
        "Your {command} workflow is still running",
        "Workflow {workflow_id} outlived the interaction window; its result will come through "
        "{rung}.",
    ),
    Event.RESUMED: _T(
        "Your {command} workflow resumed",
        "Workflow {workflow_id} was resumed after a restart. {summary}",
    ),
}

_EMAIL_FOOTER: Final = (
    "\n\n--\nYou get this because you chose e-mail notices with /notify on Discord. "
    "Stop them with /notify off via:email."
)


def notifier_name(via: str) -> str:
    return f"{USER_NOTIFIER_PREFIX}{via}"


def utc_day(now: float) -> str:
    """``YYYY-MM-DD`` of `now` in UTC: the day the daily limits count."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


class _NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class _Kit:
    """What the three plugins share: the settings, the store, the clock and the mail server."""

    settings: Settings
    store: UserSettingsStore
    clock: Callable[[], float]
    mail: MailServer | None
    load_result: ResultLoader | None


class _UserPlugin(Plugin[_NoOptions]):
    """A user channel's plugin: built by `UserChannels`, never from config."""

    via: ClassVar[str]
    events: ClassVar[frozenset[Event]] = frozenset(USER_EVENTS)
    Options: ClassVar[type[BaseModel]] = _NoOptions
    templates: ClassVar[Mapping[Event, MessageTemplate]] = USER_TEMPLATES

    def __init__(self, options: _NoOptions, context: PluginContext, *, kit: _Kit) -> None:
        super().__init__(options, context)
        self._kit = kit

    async def _current(self, user_id: int) -> tuple[UserSettings, ChannelSetting] | SendOutcome:
        """The user's settings and this channel, or a skip when it is gone or off (changed
        since the row was queued)."""
        settings = await self._kit.store.get(user_id)
        channel = settings.channels.get(self.via)
        if channel is None:
            return SendOutcome.skipped(f"user {user_id} has no {self.via} channel any more")
        if not channel.enabled:
            return SendOutcome.skipped(f"user {user_id} turned {self.via} off or it was turned off")
        return settings, channel

    async def _turn_off(self, user_id: int, reason: str, note: str, *, by_dm: bool) -> None:
        """Turn the channel off with `reason` and tell the user `note`: by DM when `by_dm` and
        it works, else as a note shown on their next command."""
        now = self._kit.clock()
        await self._kit.store.disable_channel(user_id, self.via, reason, now=now)
        logger.info(
            f"user {user_id}: {self.via} notices turned off "
            f"({mask_addresses_in(redactor.redact(reason))})"
        )
        send_dm = self.context.send_dm
        if by_dm and send_dm is not None:
            try:
                async with asyncio.timeout(TELL_DM_TIMEOUT_S):
                    await send_dm(user_id, note, None)
                return
            except Exception as exc:  # noqa: BLE001 - any DM failure leaves the note instead
                logger.info(f"user {user_id}: not DMed about {self.via} ({type(exc).__name__})")
        await self._kit.store.add_note(user_id, note, now=now)

    @staticmethod
    def _sent(target: str) -> SendOutcome:
        return SendOutcome.sent(
            [TargetResult(target=target, target_id=target_id(target), status=TargetStatus.SENT)]
        )


class UserDMPlugin(_UserPlugin):
    """A DM to the user who chose DM notices (``user:dm``)."""

    name: ClassVar[str] = "user_dm"
    via: ClassVar[str] = "dm"

    def __init__(self, options: _NoOptions, context: PluginContext, *, kit: _Kit) -> None:
        super().__init__(options, context, kit=kit)
        self._nonce = context.send_dm is not None and accepts_nonce(context.send_dm)

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        current = await self._current(notice.user_id)
        if isinstance(current, SendOutcome):
            return current
        send_dm: Any = self.context.send_dm
        if send_dm is None:
            raise TransientSendError("no bot is running to send DMs")
        user_id = notice.user_id
        embed = discord_embed(notice, message)
        del embed["title"]  # the content line says it
        extra: dict[str, str] = {}
        if self._nonce and message.idempotency_key:
            extra["nonce"] = dm_nonce(message.idempotency_key, user_id)
        timeout_s = target_timeout_s(message.timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                await send_dm(user_id, message.title[: codes.CONTENT_MAX], embed, **extra)
        except TimeoutError:
            raise TransientSendError(
                f"no answer within {timeout_s:.1f}s (outcome unknown)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the bot's send_dm may raise anything; classify it
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            detail = f"{type(exc).__name__}: {exc}" + (f" (code {code})" if code else "")
            if code in PERMANENT_DM_CODES:
                await self._turn_off(
                    user_id,
                    "Discord does not let the bot DM you (DMs closed, or no server in common)",
                    "DM notices are off: Discord would not let the bot DM you (your DMs are "
                    "closed, or you share no server with the bot). Open your DMs, then turn them "
                    "on again with /notify set via:dm.",
                    by_dm=False,
                )
                raise PermanentSendError(f"dm:{user_id}: {detail}; DM notices turned off") from None
            if isinstance(status, int) and 400 <= status < 500 and status not in {408, 429}:
                raise PermanentSendError(f"dm:{user_id}: {detail}") from None
            raise TransientSendError(f"dm:{user_id}: {detail}") from None
        return self._sent(f"dm:{user_id}")


class UserEmailPlugin(_UserPlugin):
    """A mail to the user's verified address (``user:email``) through the operator's server."""

    name: ClassVar[str] = "user_email"
    via: ClassVar[str] = "email"

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        current = await self._current(notice.user_id)
        if isinstance(current, SendOutcome):
            return current
        _, channel = current
        server = self._kit.mail
        if server is None:
            return SendOutcome.skipped(
                "e-mail is not configured (user_notifications.email_notifier)"
            )
        address, shown = channel.target, mask_address(channel.target)
        domain = server.sender.rpartition("@")[2] or "notifier.invalid"
        key = message.idempotency_key or target_id(f"{notice.workflow_id}{time.time_ns()}")
        try:
            await send_mail(
                server,
                address,
                message.title,
                message.body + _EMAIL_FOOTER,
                timeout_s=target_timeout_s(message.timeout_s),
                message_id=f"<{key}@{domain}>",
            )
        except MailRefused as exc:
            said = exc.message.replace(address, shown)
            await self._turn_off(
                notice.user_id,
                f"the mail server refused {shown} ({exc.code})",
                f"E-mail notices are off: {said}. Set an address again with "
                "/notify set via:email target:...",
                by_dm=True,
            )
            raise PermanentSendError(
                f"{shown}: {mask_addresses_in(exc.message)}; e-mail notices turned off"
            ) from None
        except MailFailed as exc:
            raise TransientSendError(f"{shown}: {mask_addresses_in(exc.message)}") from None
        return self._sent(shown)


class UserWebhookPlugin(_UserPlugin):
    """A signed callback to the user's URL (``user:webhook``)."""

    name: ClassVar[str] = "user_webhook"
    via: ClassVar[str] = "webhook"

    def __init__(
        self,
        options: _NoOptions,
        context: PluginContext,
        *,
        kit: _Kit,
        resolver: Resolver | None = None,
    ) -> None:
        super().__init__(options, context, kit=kit)
        self._sender = CallbackSender(
            allow_private=kit.settings.autointel.allow_private_networks, resolver=resolver
        )

    async def close(self) -> None:
        await self._sender.close()

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        current = await self._current(notice.user_id)
        if isinstance(current, SendOutcome):
            return current
        settings, channel = current
        if not settings.webhook_secret:
            return SendOutcome.skipped(f"user {notice.user_id} has no signing secret")
        include = self._kit.settings.user_notifications.webhook_include_result
        result = None
        if include and self._kit.load_result is not None:
            result = await self._kit.load_result(notice.workflow_id)
        body = callback_body(notice, include_result=include, result=result)
        key = message.idempotency_key or target_id(f"{notice.workflow_id}{time.time_ns()}")
        headers = signed_headers(
            settings.webhook_secret, msg_id=webhook_id(key), body=body, now_s=self._kit.clock()
        )
        shown = mask_url(channel.target)
        try:
            await self._sender.post(
                channel.target, body, headers, timeout_s=target_timeout_s(message.timeout_s)
            )
        except CallbackFailed as exc:
            await self._failed(notice.user_id, shown, exc)
        await self._kit.store.reset_failures(notice.user_id, self.via)
        return self._sent(shown)

    async def _failed(self, user_id: int, shown: str, exc: CallbackFailed) -> NoReturn:
        """Count the failure; at the limit turn the callback off and tell the user. Always
        raises the SendError the fanout needs."""
        store, limit = self._kit.store, self._kit.settings.user_notifications.webhook_max_failures
        failures = await store.record_failure(user_id, self.via, now=self._kit.clock())
        if failures >= limit:
            await self._turn_off(
                user_id,
                f"{failures} deliveries in a row failed (last: {exc.reason})",
                f"Webhook callbacks are off: the last {failures} deliveries to {shown} failed "
                f"(last: {exc.reason}). Fix the receiver, then turn them on again with "
                "/notify set via:webhook target:...",
                by_dm=True,
            )
            raise PermanentSendError(
                f"{shown}: {exc.reason}; callbacks turned off after {failures} failures"
            )
        error = PermanentSendError if exc.permanent else TransientSendError
        raise error(f"{shown}: {exc.reason}", retry_after_s=exc.retry_after_s)


_PLUGINS: Final[Mapping[str, type[_UserPlugin]]] = {
    "dm": UserDMPlugin,
    "email": UserEmailPlugin,
    "webhook": UserWebhookPlugin,
}


class UserChannels:
    """The `notifier.fanout.user_routes.UserRoutes` of this process: the channel notifiers the
    operator allows (fixed at start) and, per notice, the ones the user chose."""

    def __init__(
        self,
        settings: Settings,
        store: UserSettingsStore,
        context: PluginContext,
        *,
        mail: MailServer | None,
        clock: Callable[[], float] = time.time,
        load_result: ResultLoader | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        own = settings.user_notifications
        usable = {"dm": context.send_dm is not None, "email": mail is not None, "webhook": True}
        self.vias: tuple[str, ...] = (
            tuple(via for via in VIAS if via in own.allow and usable[via]) if own.enabled else ()
        )
        kit = _Kit(settings, store, clock, mail, load_result)
        notifiers: dict[str, Notifier] = {}
        for via in self.vias:
            cls = _PLUGINS[via]
            plugin = (
                UserWebhookPlugin(_NoOptions(), context, kit=kit, resolver=resolver)
                if cls is UserWebhookPlugin
                else cls(_NoOptions(), context, kit=kit)
            )
            entry = NotifierEntry.model_construct(
                name=notifier_name(via),
                plugin=cls.name,
                on=USER_EVENTS,
                enabled=True,
                filter=NotifierFilter(),
                templates={},
                options={},
            )
            notifiers[entry.name] = Notifier(-1, entry, plugin, USER_TEMPLATES)
        self._notifiers: Mapping[str, Notifier] = notifiers

    def notifiers(self) -> Mapping[str, Notifier]:
        return self._notifiers

    async def close(self) -> None:
        """Release what the plugins hold (the webhook sender's session)."""
        for notifier in self._notifiers.values():
            await notifier.plugin.close()

    def chosen(self, settings: UserSettings, notice: Notice) -> list[str]:
        """The vias of `settings` that want `notice`: on, offered, the event chosen, the
        workflow among the chosen ones (none chosen: every workflow)."""
        command = notice.command.lstrip("/")
        vias: list[str] = []
        for via in self.vias:
            channel = settings.channels.get(via)
            if channel is None or not channel.enabled or notice.event.value not in channel.events:
                continue
            if channel.workflows and command not in channel.workflows:
                continue
            if via != "dm" and not channel.target:
                continue
            vias.append(via)
        return vias

    async def route(self, notice: Notice) -> Sequence[str]:
        """The notifier names (``user:email``...) `notice` goes to. Counts one notice against
        the user's daily limit when it goes anywhere; past the limit nothing is routed, the
        metric counts ``limited`` and the user gets one note that day saying so."""
        if not self.vias or notice.event not in USER_EVENTS:
            return []
        vias = self.chosen(await self._store.get(notice.user_id), notice)
        if not vias:
            return []
        now = self._clock()
        count = await self._store.count_notice(notice.user_id, utc_day(now))
        limit = self._settings.user_notifications.per_user_daily_limit
        if count > limit:
            for via in vias:
                USER_NOTIFICATIONS.labels(via, "limited").inc()
            if count == limit + 1:
                logger.info(f"user {notice.user_id} reached the daily limit of {limit} notices")
                await self._store.add_note(
                    notice.user_id,
                    f"You reached today's limit of {limit} notices: more are not sent until "
                    "00:00 UTC. Your results are kept; /retrieve_results gives them.",
                    now=now,
                )
            return []
        return [notifier_name(via) for via in vias]

    def sent(self, notifier: str, outcome: str) -> None:
        USER_NOTIFICATIONS.labels(notifier.removeprefix(USER_NOTIFIER_PREFIX), outcome).inc()
