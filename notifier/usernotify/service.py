"""`UserNotifications`: what ``/notify`` and ``notifier users`` call, one method per command.

Every method takes the Discord user's id and returns the private reply to show them: plain text,
a few lines, saying what happened and what to do next; a bad value is named with its field
(``events: unknown event 'complet' (choose from completed, ...)``). The cog and the CLI only parse
and render. Storage failures raise StoreError (the caller says "try again later").

The settings live in the store (`UserSettingsStore`), so they survive restarts and are shared by
every process; nothing about a user is kept in memory. The events and workflows asked for with
``/notify set via:email`` are stored with the pending code, and ``/notify verify`` makes the
channel of them, whichever process answers it.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Final

from loguru import logger

from ..config import USER_DEFAULT_EVENTS, USER_EVENTS, Settings
from ..events import Event, Notice
from ..fanout.outbox import Outbox
from ..fanout.plugin import PluginContext, SendError, SendStatus
from ..fanout.transports.common import mask_url
from ..fanout.user_routes import UserRoutes
from ..store.user_settings import ChannelSetting, UserSettingsStore
from ..workflows.netguard import Resolver, URLRefused
from .channels import VIAS, ResultLoader, UserChannels, notifier_name, utc_day
from .mailer import MailFailed, MailRefused, MailServer, mail_server, send_mail
from .verification import (
    CODE_TTL_S,
    MAX_WRONG_CODES,
    VerificationRefused,
    Verifier,
    check_address,
    mask_address,
    mask_addresses_in,
)
from .webhook import check_callback_url, new_secret

__all__ = ["MAX_WORKFLOWS", "ChoiceError", "UserNotifications", "parse_events", "parse_workflows"]

#: Workflows one channel may name (more is a sign of a mistake; none means every workflow).
MAX_WORKFLOWS: Final = 25
_EVENT_NAMES: Final = tuple(event.value for event in USER_EVENTS)
_COMMAND_NAME = re.compile(r"[a-z0-9_-]{1,32}")  # Discord's slash command names
_SPLIT = re.compile(r"[,\s]+")
_WORDS: Final = {"dm": "DM", "email": "E-mail", "webhook": "Webhook"}


class ChoiceError(ValueError):
    """A value the user typed is not valid; the message names the field (``events: ...``)."""


def _items(values: Sequence[str]) -> list[str]:
    """Each value may itself be a list: ``["completed, failed"]`` and ``["completed", "failed"]``
    mean the same (a slash command option is one string)."""
    return [part for value in values for part in _SPLIT.split(value.strip()) if part]


def parse_events(values: Sequence[str] | None) -> tuple[str, ...]:
    """The event names chosen, in the canonical order; None means the defaults."""
    if values is None:
        return tuple(event.value for event in USER_DEFAULT_EVENTS)
    names = [name.lower() for name in _items(values)]
    if not names:
        raise ChoiceError(f"events: choose at least one ({', '.join(_EVENT_NAMES)})")
    for name in names:
        if name not in _EVENT_NAMES:
            raise ChoiceError(
                f"events: unknown event {name[:40]!r} (choose from {', '.join(_EVENT_NAMES)})"
            )
    return tuple(event for event in _EVENT_NAMES if event in names)


def parse_workflows(values: Sequence[str] | None) -> tuple[str, ...]:
    """Command names without ``/``; None or nothing means every workflow."""
    if values is None:
        return ()
    names = list(dict.fromkeys(name.lstrip("/").lower() for name in _items(values)))
    for name in names:
        if not _COMMAND_NAME.fullmatch(name):
            raise ChoiceError(
                f"workflows: {name[:40]!r} is not a command name (letters, digits, - and _)"
            )
    if len(names) > MAX_WORKFLOWS:
        raise ChoiceError(f"workflows: at most {MAX_WORKFLOWS} (you gave {len(names)})")
    return tuple(names)


def _describe_choice(events: Sequence[str], workflows: Sequence[str]) -> str:
    which = "every workflow" if not workflows else "only " + ", ".join(workflows)
    return f"for {', '.join(events)} of {which}"


def _describe_target(channel: ChannelSetting) -> str:
    if channel.via == "email":
        return f" to {mask_address(channel.target)}"
    if channel.via == "webhook":
        return f" to {mask_url(channel.target)}"
    return ""


class UserNotifications:
    """The facade of users' own notices. Build one per process with the store and the fanout's
    plugin context; hand `routes` to ``Fanout.open(users=...)``, `bind_outbox` the fanout's
    outbox (for `forget`), and `close` it after the fanout.

    `load_result` gives webhook bodies the stored result when ``webhook_include_result`` is on;
    `resolver` replaces DNS for the callback guard (tests)."""

    def __init__(
        self,
        settings: Settings,
        store: UserSettingsStore,
        context: PluginContext,
        *,
        clock: Callable[[], float] = time.time,
        load_result: ResultLoader | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._resolver = resolver
        self._mail: MailServer | None = mail_server(settings)
        self._channels = UserChannels(
            settings,
            store,
            context,
            mail=self._mail,
            clock=clock,
            load_result=load_result,
            resolver=resolver,
        )
        self._verifier = Verifier(store, clock=clock)
        self._outbox: Outbox | None = None

    @property
    def routes(self) -> UserRoutes:
        return self._channels

    def bind_outbox(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def close(self) -> None:
        """Release the channels' resources (the webhook sender's HTTP session)."""
        await self._channels.close()

    def offered(self) -> tuple[str, ...]:
        """The vias users may choose here: allowed by the operator, and usable (e-mail needs
        ``email_notifier``, DM a running bot)."""
        return self._channels.vias

    def _not_offered(self, via: str) -> str | None:
        if via in self.offered():
            return None
        if not self._settings.user_notifications.enabled:
            return "Notices of your own are turned off on this bot."
        offered = ", ".join(self.offered())
        why = (
            " (the operator has not set up a mail server for users)"
            if via == "email" and via in self._settings.user_notifications.allow
            else ""
        )
        return f"{_WORDS[via]} notices are not offered on this bot{why}." + (
            f" It offers: {offered}." if offered else ""
        )

    # -- set -------------------------------------------------------------------------------

    async def set_dm(
        self, user_id: int, events: Sequence[str] | None, workflows: Sequence[str] | None
    ) -> str:
        if refusal := self._not_offered("dm"):
            return refusal
        try:
            chosen, only = parse_events(events), parse_workflows(workflows)
        except ChoiceError as exc:
            return str(exc)
        now = self._clock()
        await self._store.put_channel(
            user_id, ChannelSetting("dm", "", chosen, only, updated_at=now), now=now
        )
        return f"DM notices are on {_describe_choice(chosen, only)}. Try them with /notify test."

    async def set_email(
        self,
        user_id: int,
        address: str,
        events: Sequence[str] | None,
        workflows: Sequence[str] | None,
    ) -> str:
        """Check the choices and the address, then mail a code (the address is stored only when
        the code comes back through `verify`)."""
        if refusal := self._not_offered("email"):
            return refusal
        server = self._mail
        assert server is not None  # offered() holds email only with a mail server
        try:
            chosen, only = parse_events(events), parse_workflows(workflows)
            address = check_address(address)
        except ChoiceError as exc:
            return str(exc)
        except VerificationRefused as exc:
            return f"target: {exc.reason}"
        shown = mask_address(address)
        try:
            code = await self._verifier.issue(user_id, address, events=chosen, workflows=only)
        except VerificationRefused as exc:
            return f"No code was sent: {exc.reason}."
        minutes = f"{CODE_TTL_S / 60:.0f}"
        domain = server.sender.rpartition("@")[2] or None
        try:
            await send_mail(
                server,
                address,
                "Your verification code for Discord notices",
                f"Your code is {code}.\n\nType /notify verify code:{code} on Discord within "
                f"{minutes} minutes to get your workflow notices at this address.\n\n"
                "If you did not ask for this, ignore this mail: nothing more is sent here "
                "unless the code is given back.",
                timeout_s=self._settings.fanout.timeout,
                message_id=email.utils.make_msgid(domain=domain),
            )
        except MailRefused as exc:
            await self._verifier.cancel(user_id)
            said = exc.message.replace(address, shown)
            return f"No code is waiting: {said}. Check the address and try again."
        except MailFailed as exc:
            logger.warning(
                f"user {user_id}: verification code to {shown} not sent: "
                f"{mask_addresses_in(exc.message)}"
            )
            return (
                f"The code could not be sent to {shown} right now (the mail server did not take "
                "it); try again in a few minutes."
            )
        return (
            f"A {len(code)}-digit code is on its way to {shown}. Finish with /notify verify "
            f"code:<the code> within {minutes} minutes ({MAX_WRONG_CODES} tries)."
        )

    async def verify(self, user_id: int, code: str) -> str:
        if refusal := self._not_offered("email"):
            return refusal
        try:
            pending = await self._verifier.confirm(user_id, code)
        except VerificationRefused as exc:
            return exc.reason[:1].upper() + exc.reason[1:] + "."
        # The choices stored with the code (none stored: the defaults, as `set_email` would).
        chosen, only = pending.events or parse_events(None), pending.workflows
        address, now = pending.address, self._clock()
        await self._store.put_channel(
            user_id, ChannelSetting("email", address, chosen, only, updated_at=now), now=now
        )
        return (
            f"Verified. E-mail notices go to {mask_address(address)} "
            f"{_describe_choice(chosen, only)}. Try them with /notify test."
        )

    async def set_webhook(
        self,
        user_id: int,
        url: str,
        events: Sequence[str] | None,
        workflows: Sequence[str] | None,
    ) -> str:
        if refusal := self._not_offered("webhook"):
            return refusal
        try:
            chosen, only = parse_events(events), parse_workflows(workflows)
            target = await check_callback_url(
                url,
                allow_private=self._settings.autointel.allow_private_networks,
                resolver=self._resolver,
            )
        except ChoiceError as exc:
            return str(exc)
        except URLRefused as exc:
            return f"target: {exc.reason}"
        now = self._clock()
        secret = (await self._store.get(user_id)).webhook_secret
        fresh = secret is None
        if secret is None:
            secret = new_secret()
            await self._store.set_webhook_secret(user_id, secret, now=now)
        await self._store.put_channel(
            user_id, ChannelSetting("webhook", target, chosen, only, updated_at=now), now=now
        )
        head = f"Webhook callbacks go to {mask_url(target)} {_describe_choice(chosen, only)}."
        if fresh:
            return (
                f"{head}\nYour signing secret (shown only now, keep it safe): {secret}\n"
                "Verify each callback with the standardwebhooks library: "
                "Webhook(secret).verify(body, headers). Try it with /notify test."
            )
        return (
            f"{head} They are signed with your current secret (/notify secret rotate makes a "
            "new one). Try it with /notify test."
        )

    async def rotate_secret(self, user_id: int) -> str:
        if refusal := self._not_offered("webhook"):
            return refusal
        secret = new_secret()
        await self._store.set_webhook_secret(user_id, secret, now=self._clock())
        settings = await self._store.get(user_id)
        tail = (
            ""
            if "webhook" in settings.channels
            else "\nYou have no callback yet: /notify set via:webhook target:https://..."
        )
        return (
            f"New signing secret (shown only now, keep it safe; the old one no longer signs): "
            f"{secret}{tail}"
        )

    # -- look, test, stop ------------------------------------------------------------------

    async def show(self, user_id: int) -> str:
        settings = await self._store.get(user_id)
        lines: list[str] = []
        for via in VIAS:
            channel = settings.channels.get(via)
            if channel is None:
                continue
            state = "on" if channel.enabled else f"off ({channel.disabled_reason or 'turned off'})"
            extra = "" if via in self.offered() else " (not offered on this bot now)"
            lines.append(
                f"- {_WORDS[via]}{_describe_target(channel)}: {state}, "
                f"{_describe_choice(channel.events, channel.workflows)}{extra}"
            )
        pending = await self._store.pending_code(user_id)
        if pending is not None and pending.expires_at > self._clock():
            minutes = max(1, round((pending.expires_at - self._clock()) / 60))
            lines.append(
                f"- A code for {mask_address(pending.address)} is waiting for /notify verify "
                f"(about {minutes} min left)."
            )
        if settings.webhook_secret and "webhook" in settings.channels:
            lines.append("- Callbacks are signed with your secret (shown only when it was made).")
        offered = ", ".join(self.offered()) or "nothing (turned off)"
        if not lines:
            return (
                f"You have no notice channels. This bot offers: {offered}. Choose one with "
                "/notify set via:<dm|email|webhook>."
            )
        return "Your notice channels:\n" + "\n".join(lines) + f"\nThis bot offers: {offered}."

    async def test(self, user_id: int) -> str:
        """Send a test notice now to each channel that is on, bypassing the outbox (the user
        waits for the answer), counted against the daily limit like any notice."""
        settings = await self._store.get(user_id)
        vias = [
            via
            for via in self.offered()
            if (channel := settings.channels.get(via)) is not None and channel.enabled
        ]
        if not vias:
            return "You have no channel that is on. Choose one with /notify set."
        now = self._clock()
        limit = self._settings.user_notifications.per_user_daily_limit
        if await self._store.count_notice(user_id, utc_day(now)) > limit:
            return f"You reached today's limit of {limit} notices; the test was not sent."
        tag = secrets.token_hex(6)
        notice = Notice(
            event=Event.COMPLETED,
            workflow_id=f"test-{tag}",
            user_id=user_id,
            user_name="",
            command="notify-test",
            summary="This is a test notice from /notify test; no workflow ran.",
            occurred_at=now,
        )
        outcomes = await asyncio.gather(*(self._test_one(via, notice, tag) for via in vias))
        return "Test notice:\n" + "\n".join(outcomes)

    async def _test_one(self, via: str, notice: Notice, tag: str) -> str:
        notifier = self._channels.notifiers()[notifier_name(via)]
        timeout_s = self._settings.fanout.timeout
        try:
            outcome = await notifier.send_once(
                notice, idempotency_key=f"test-{tag}-{via}", timeout_s=timeout_s
            )
        except SendError as exc:
            return f"- {_WORDS[via]}: failed ({exc.message})"
        except TimeoutError:
            return f"- {_WORDS[via]}: no answer within {timeout_s:g}s"
        if outcome.status is SendStatus.SKIPPED:
            return f"- {_WORDS[via]}: not sent ({outcome.detail})"
        return f"- {_WORDS[via]}: sent"

    async def off(self, user_id: int, via: str | None) -> str:
        """Remove one channel (or all): its target is no longer stored. The webhook secret
        stays for a later callback (`forget` removes it)."""
        if via is None:
            settings = await self._store.get(user_id)
            removed = [v for v in VIAS if v in settings.channels]
            for name in removed:
                await self._store.remove_channel(user_id, name)
            await self._store.delete_code(user_id)
            if not removed:
                return "You had no notice channels; nothing changed."
            return (
                f"All your notice channels are off and removed ({', '.join(removed)}). "
                "/notify forget deletes everything else stored about you."
            )
        name = via.strip().lower()
        if name not in VIAS:
            return f"via: unknown {via[:40]!r} (choose from {', '.join(VIAS)})"
        removed_one = await self._store.remove_channel(user_id, name)
        if name == "email":
            await self._store.delete_code(user_id)
        if not removed_one:
            return f"You had no {_WORDS[name]} channel; nothing changed."
        stored = {
            "email": " The address is no longer stored.",
            "webhook": " The URL is no longer stored.",
        }
        return f"{_WORDS[name]} notices are off.{stored.get(name, '')}"

    async def forget(self, user_id: int) -> str:
        """Delete every row naming the user: settings, codes, notes, counts, and their queued
        notices in the outbox (when one is bound). Says what went."""
        report = await self._store.forget(user_id)
        queued = await self._outbox.forget_user(user_id) if self._outbox is not None else 0
        parts = [f"{kind} ({count})" for kind, count in report.deleted.items() if count]
        if queued:
            parts.append(f"queued notices ({queued})")
        # Results are not notification data: they stay for `/retrieve_results` until retention.
        days = self._settings.storage.retention_days
        results = (
            f"Your workflow results are kept until retention removes them ({days:g} days after "
            "they finish)."
        )
        if not parts:
            return f"Nothing was stored about your notifications; nothing to delete. {results}"
        return f"Deleted everything stored about your notifications: {', '.join(parts)}. {results}"

    async def take_notes(self, user_id: int) -> list[str]:
        """What the bot owes the user (a channel turned off, a limit reached), oldest first,
        removed as they are read: the cog shows them with its next reply."""
        return await self._store.take_notes(user_id)
