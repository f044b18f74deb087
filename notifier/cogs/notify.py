"""`/notify`: each user chooses how they hear about their own workflows (DM, verified e-mail,
signed webhook callback), and the notes the bot owes them reach them on their next command.

The commands are the top floor: they bound and split what Discord sent, call one method of
`UserNotifications` (notifier.usernotify) and show the text it returns, privately. Everything a
user types is hostile: every option is bounded here (and by Discord, through ``max_length``), a
target is never written to a log, and no reply is public.

The cog exists only with ``user_notifications.enabled`` (the app adds it; see `notify_cog`). Its
``via:`` choices are the vias the operator allows and the configuration can serve, fixed when the
commands are registered; the service's own `offered()` decides again at every ``/notify set``
(a via it cannot serve now is refused in words, not by a choice list).

Notes owed to a user ("your address refused mail, so e-mail notices are off") are shown after
any command of the bot that user runs, as a private follow-up (`NotesAfterCommands`). Theory of
operation: nextcord dispatches ``application_command_completion`` once a command's callback has
returned, on a task of its own, so a slow store never delays a command. The notes are taken
from the store only when the command has been answered (a follow-up needs the initial
response), and then shown only if the interaction's original message is no longer Discord's
"thinking..." placeholder: the first follow-up after a deferral fills that placeholder, with the
deferral's visibility, which would put a private note where a public result belongs. A note that
cannot be shown (a placeholder still thinking, a follow-up refused, the connection lost) is put
back with the store's `add_note`, so it is shown on a later command instead of being lost (a
call that does not answer within `_CALL_TIMEOUT_S` counts as failed: a note then may be shown
twice, never lost; only a crash in those seconds could lose one).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import nextcord
from loguru import logger
from nextcord.ext import commands

from ..config import Settings
from ..discord.codes import CONTENT_MAX
from ..discord.replies import TRANSPORT_ERRORS, defer, reply_ephemeral
from ..errors import StoreError
from ..store.user_settings import UserSettingsStore
from ..usernotify.channels import VIAS
from ..usernotify.service import UserNotifications

__all__ = [
    "CODE_MAX_CHARS",
    "LIST_MAX_CHARS",
    "LIST_MAX_ITEMS",
    "TARGET_MAX_CHARS",
    "NotifyServices",
    "notes_messages",
    "notify_cog",
    "parse_list",
    "vias_configured",
]

# Bounds on what a user may type (Discord enforces them too, through max_length).
TARGET_MAX_CHARS: Final = 2048  # a webhook URL; an address is held to 254 by the service
LIST_MAX_CHARS: Final = 400
LIST_MAX_ITEMS: Final = 25
CODE_MAX_CHARS: Final = 16
_EVENTS_HELP: Final = (
    "Comma-separated: completed, failed, persisted, handoff, resumed (default: the first three)"
)
_WORKFLOWS_HELP: Final = "Comma-separated command names, e.g. autointel (default: every workflow)"
_UNAVAILABLE: Final = (
    "❌ Your notification settings cannot be reached just now; please try again in a minute "
    "(/notify show says what is stored)."
)
_NOT_READY: Final = "❌ The bot is still starting; please try again in a moment."
_NOTES_HEADER: Final = "📬 About your notifications:"
# The notes are out of the store while they are being shown: no call may hold them for long.
_CALL_TIMEOUT_S: Final = 10.0


class NotifyServices(Protocol):
    """What `/notify` uses (the app's `Notifier` is one). Read when a command runs: the app
    opens them with the bot's first connect, after the cog was added; before that (and after
    close) reading one raises RuntimeError."""

    @property
    def settings(self) -> Settings: ...

    @property
    def user_notifications(self) -> UserNotifications: ...

    @property
    def user_settings(self) -> UserSettingsStore: ...


def vias_configured(settings: Settings) -> tuple[str, ...]:
    """The vias ``/notify set`` offers as choices: those the operator allows, e-mail only with
    ``user_notifications.email_notifier`` (without a mail server no code can be sent)."""
    users = settings.user_notifications
    return tuple(v for v in users.allow if v != "email" or users.email_notifier is not None)


def parse_list(text: str | None, *, what: str) -> tuple[str, ...] | None:
    """``"completed, failed"`` -> ``("completed", "failed")``; None for nothing given (the
    service's default). Commas or spaces separate; a leading ``/`` of a command name is
    dropped; repeats go. ValueError in words for a list too long (the values themselves are
    the service's to judge)."""
    if text is None or not text.strip():
        return None
    if len(text) > LIST_MAX_CHARS:
        raise ValueError(f"{what}: at most {LIST_MAX_CHARS} characters")
    items = [item.strip().lstrip("/").lower() for item in re.split(r"[,\s]+", text)]
    unique = tuple(dict.fromkeys(item for item in items if item))
    if len(unique) > LIST_MAX_ITEMS:
        raise ValueError(f"{what}: at most {LIST_MAX_ITEMS} names")
    return unique or None


def _cut(text: str) -> str:
    return text if len(text) <= CONTENT_MAX else text[: CONTENT_MAX - 1] + "…"


def notes_messages(notes: Sequence[str]) -> list[list[str]]:
    """The notes grouped into messages of at most 2000 characters (a header, one bullet per
    note; a note too long for a message on its own is cut). Each group is one follow-up."""
    groups: list[list[str]] = []
    size = 0
    for note in notes:
        line = _bullet(note)
        if not groups or size + len(line) > CONTENT_MAX:
            groups.append([])
            size = len(_NOTES_HEADER)
        groups[-1].append(note)
        size += len(line)
    return groups


def _bullet(note: str) -> str:
    room = CONTENT_MAX - len(_NOTES_HEADER) - 3
    text = note if len(note) <= room else note[: room - 1] + "…"
    return f"\n• {text}"


def _notes_text(notes: Sequence[str]) -> str:
    return _NOTES_HEADER + "".join(_bullet(note) for note in notes)


class NotesAfterCommands(commands.Cog):
    """The notes owed to a user, shown after any command of theirs (see the module docstring).
    The base of the `/notify` cog: its listener comes and goes with that cog."""

    def __init__(self, services: NotifyServices) -> None:
        self.services = services

    @commands.Cog.listener("on_application_command_completion")
    async def show_notes(self, interaction: nextcord.Interaction) -> None:
        user = interaction.user
        if user is None or not interaction.response.is_done():
            return  # nothing to follow up (an autocomplete, a command that never answered)
        try:
            service, store = self.services.user_notifications, self.services.user_settings
        except RuntimeError:
            return  # closing
        try:
            notes = await service.take_notes(user.id)
        except StoreError as exc:
            logger.warning("notes owed to user {} not read: {}", user.id, exc)
            return
        if not notes:
            return
        unsent = list(notes)
        if await self._original_answered(interaction):
            for group in notes_messages(notes):
                if not await self._follow_up(interaction, _notes_text(group)):
                    break
                del unsent[: len(group)]
        if unsent:
            await self._put_back(store, user.id, unsent)

    @staticmethod
    async def _original_answered(interaction: nextcord.Interaction) -> bool:
        """Whether a follow-up now is a message of its own: the original response exists and is
        not the "thinking..." placeholder of a deferral (which a follow-up would fill)."""
        try:
            original = await asyncio.wait_for(interaction.original_message(), _CALL_TIMEOUT_S)
        except nextcord.HTTPException as exc:
            logger.debug("notes held back: original response unreadable (code {})", exc.code)
            return False
        except TRANSPORT_ERRORS as exc:
            logger.debug("notes held back: {}", type(exc).__name__)
            return False
        return not original.flags.loading

    @staticmethod
    async def _follow_up(interaction: nextcord.Interaction, text: str) -> bool:
        try:
            await asyncio.wait_for(interaction.followup.send(text, ephemeral=True), _CALL_TIMEOUT_S)
        except nextcord.HTTPException as exc:
            logger.warning("notes not shown: follow-up refused: {} (code {})", exc.status, exc.code)
            return False
        except TRANSPORT_ERRORS as exc:
            logger.warning("notes not shown: the connection was lost ({})", type(exc).__name__)
            return False
        return True

    @staticmethod
    async def _put_back(store: UserSettingsStore, user_id: int, notes: Sequence[str]) -> None:
        try:
            for note in notes:
                await store.add_note(user_id, note, now=time.time())
        except StoreError as exc:
            logger.error(
                "{} note(s) owed to user {} could not be kept: {}", len(notes), user_id, exc
            )


Call = Callable[[UserNotifications, int], Awaitable[str]]


class _NotifyBase(NotesAfterCommands):
    """What every `/notify` subcommand does around its one service call."""

    async def answer(
        self, interaction: nextcord.Interaction, call: Call, *, what: str, slow: bool = False
    ) -> None:
        """Defer first when `slow` (mail is sent, a URL resolved, notices queued), call the
        service for the caller, and show its text privately. The storage failing is a reply in
        words (logged without anything the user typed); any other exception is a bug, answered
        by the app's error handler."""
        user = interaction.user
        assert user is not None  # a slash command always has its user
        if slow and not await defer(interaction, ephemeral=True):
            return
        try:
            service = self.services.user_notifications
        except RuntimeError:
            await reply_ephemeral(interaction, _NOT_READY)
            return
        try:
            text = await call(service, user.id)
        except StoreError as exc:
            logger.error("/notify {} for user {} failed: {}", what, user.id, exc)
            text = _UNAVAILABLE
        await reply_ephemeral(interaction, _cut(text))

    async def refuse(self, interaction: nextcord.Interaction, text: str) -> None:
        await reply_ephemeral(interaction, f"❌ {text}")

    async def set_channel(
        self,
        interaction: nextcord.Interaction,
        via: str,
        target: str | None,
        events: str | None,
        workflows: str | None,
    ) -> None:
        """`/notify set`: the options checked for shape here (lengths, lists, a target where
        one is needed), their meaning by the service (addresses, URLs, event names)."""
        target = (target or "").strip()
        if via not in VIAS:
            await self.refuse(interaction, "via: dm, email or webhook.")
            return
        if len(target) > TARGET_MAX_CHARS:
            await self.refuse(interaction, f"target: at most {TARGET_MAX_CHARS} characters.")
            return
        try:
            chosen_events = parse_list(events, what="events")
            chosen_workflows = parse_list(workflows, what="workflows")
        except ValueError as exc:
            await self.refuse(interaction, f"{exc}.")
            return
        if via == "dm" and target:
            await self.refuse(interaction, "`via:dm` takes no target: the DM goes to you.")
            return
        if via != "dm" and not target:
            wanted = "your e-mail address" if via == "email" else "your https:// webhook URL"
            await self.refuse(interaction, f"`via:{via}` needs `target:` {wanted}.")
            return

        async def call(service: UserNotifications, user_id: int) -> str:
            # Each refuses a via the service does not offer now, in words (`offered()`).
            if via == "dm":
                return await service.set_dm(user_id, chosen_events, chosen_workflows)
            if via == "email":
                return await service.set_email(user_id, target, chosen_events, chosen_workflows)
            return await service.set_webhook(user_id, target, chosen_events, chosen_workflows)

        # E-mail sends a code; a webhook URL is resolved and checked: both may take seconds.
        await self.answer(interaction, call, what=f"set {via}", slow=via != "dm")


def notify_cog(services: NotifyServices) -> commands.Cog:
    """The `/notify` cog for these settings: its ``via:`` choices are `vias_configured` (a class
    made per call, so two bots in one process never share a command object)."""
    vias = list(vias_configured(services.settings))

    class NotifyCog(_NotifyBase):
        @nextcord.slash_command(
            name="notify",
            description="Choose how you hear about your workflows (DM, e-mail, webhook)",
        )
        async def notify(self, interaction: nextcord.Interaction) -> None:
            """Parent of the subcommands; Discord never invokes it directly."""

        @notify.subcommand(
            name="set", description="Hear about your workflows by DM, e-mail or webhook"
        )
        async def notify_set(
            self,
            interaction: nextcord.Interaction,
            via: str = nextcord.SlashOption(
                description="How you want to hear", choices=vias or None
            ),
            target: str | None = nextcord.SlashOption(
                description="Your e-mail address, or your https:// webhook URL (not for dm)",
                required=False,
                default=None,
                max_length=TARGET_MAX_CHARS,
            ),
            events: str | None = nextcord.SlashOption(
                description=_EVENTS_HELP, required=False, default=None, max_length=LIST_MAX_CHARS
            ),
            workflows: str | None = nextcord.SlashOption(
                description=_WORKFLOWS_HELP,
                required=False,
                default=None,
                max_length=LIST_MAX_CHARS,
            ),
        ) -> None:
            await self.set_channel(interaction, via, target, events, workflows)

        @notify.subcommand(name="verify", description="Confirm your e-mail address with its code")
        async def notify_verify(
            self,
            interaction: nextcord.Interaction,
            code: str = nextcord.SlashOption(
                description="The 6-digit code mailed to you", max_length=CODE_MAX_CHARS
            ),
        ) -> None:
            clean = code.strip().replace(" ", "")
            if not clean or len(clean) > CODE_MAX_CHARS:
                await self.refuse(interaction, "That is not a code: it has 6 digits.")
                return
            await self.answer(interaction, lambda s, uid: s.verify(uid, clean), what="verify")

        @notify.subcommand(name="show", description="What you chose, and what is stored about you")
        async def notify_show(self, interaction: nextcord.Interaction) -> None:
            await self.answer(interaction, lambda s, uid: s.show(uid), what="show")

        @notify.subcommand(name="test", description="Send a test notice to each of your channels")
        async def notify_test(self, interaction: nextcord.Interaction) -> None:
            await self.answer(interaction, lambda s, uid: s.test(uid), what="test", slow=True)

        @notify.subcommand(name="off", description="Stop one way of hearing, or all of them")
        async def notify_off(
            self,
            interaction: nextcord.Interaction,
            via: str | None = nextcord.SlashOption(
                description="Which one (default: all)",
                required=False,
                default=None,
                choices=list(VIAS),
            ),
        ) -> None:
            if via is not None and via not in VIAS:
                await self.refuse(interaction, "via: dm, email or webhook.")
                return
            await self.answer(interaction, lambda s, uid: s.off(uid, via), what="off")

        @notify.subcommand(name="forget", description="Delete everything stored about you here")
        async def notify_forget(self, interaction: nextcord.Interaction) -> None:
            await self.answer(interaction, lambda s, uid: s.forget(uid), what="forget", slow=True)

        @notify.subcommand(name="secret", description="Your webhook signing secret")
        async def notify_secret(self, interaction: nextcord.Interaction) -> None:
            """Parent of `rotate`; Discord never invokes it directly."""

        @notify_secret.subcommand(
            name="rotate", description="Make a new webhook signing secret (shown once)"
        )
        async def notify_secret_rotate(self, interaction: nextcord.Interaction) -> None:
            await self.answer(
                interaction, lambda s, uid: s.rotate_secret(uid), what="secret rotate"
            )

    return NotifyCog(services)
