"""Interaction lifecycle: creation, the initial callback and the token webhook.

Encodes the timing rules a long-running bot must respect: the initial
response must arrive within ``initial_response_deadline_s`` (else
404/10062), it can happen only once (400/40060), and the token (hence
followups and ``@original`` edits) dies after ``interaction_ttl_s``
(401/50027). A followup after a deferred response fills the "thinking"
placeholder instead of posting a new message, as Discord does.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from . import errors, payloads, permissions
from .bodies import ParsedBody
from .clock import Clock
from .config import EmulatorConfig
from .messaging import INTERACTION_FLAGS, SUPPRESS_EMBEDS, MessageService
from .model import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    EPHEMERAL,
    LOADING,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    Author,
    Channel,
    InteractionRecord,
    JsonObject,
    Message,
    User,
)
from .waiting import ChangeFeed
from .world import World

PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

CHAT_INPUT_COMMAND_MESSAGE = 20

ALLOWED_RESPONSES: dict[int, set[int]] = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {
        CHANNEL_MESSAGE,
        DEFERRED_CHANNEL_MESSAGE,
        DEFERRED_UPDATE_MESSAGE,
        UPDATE_MESSAGE,
        MODAL,
    },
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
    MODAL_SUBMIT: {
        CHANNEL_MESSAGE,
        DEFERRED_CHANNEL_MESSAGE,
        DEFERRED_UPDATE_MESSAGE,
        UPDATE_MESSAGE,
    },
}


class InteractionService:
    """Creates interactions and serves their callback and token webhook."""

    def __init__(
        self,
        world: World,
        config: EmulatorConfig,
        clock: Clock,
        feed: ChangeFeed,
        messages: MessageService,
        base_url: Callable[[], str],
    ) -> None:
        self._world = world
        self._config = config
        self._clock = clock
        self._feed = feed
        self._messages = messages
        self._base_url = base_url

    @property
    def bot_author(self) -> Author:
        bot = self._world.bot
        return Author(id=bot.id, username=bot.username, bot=True)

    # -- creation -------------------------------------------------------
    def create(
        self,
        *,
        kind: int,
        user: User,
        channel: Channel,
        data: JsonObject,
        source_message: Message | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Register a new interaction; the caller dispatches ``record.payload``."""
        interaction_id = self._world.ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            application_id=self._world.application_id,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            user_id=user.id,
            data=data,
            payload={},
            created_at=self._clock.now(),
            source_message_id=source_message.id if source_message else None,
        )
        record.payload = self._payload(record, user, channel, source_message, locale)
        self._world.interactions[record.id] = record
        self._world.interaction_tokens[token] = record.id
        self._feed.notify()
        return record

    def _payload(
        self,
        record: InteractionRecord,
        user: User,
        channel: Channel,
        source: Message | None,
        locale: str,
    ) -> JsonObject:
        world = self._world
        channel_data = payloads.channel(world, channel)
        payload: JsonObject = {
            "id": str(record.id),
            "application_id": str(record.application_id),
            "type": record.type,
            "data": record.data,
            "token": record.token,
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel_data,
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": self._config.attachment_size_limit,
        }
        if channel.guild_id is not None:
            guild = world.guild(channel.guild_id)
            member = guild.members.get(user.id)
            if member is None:
                raise ValueError(f"{user.username} is not a member of guild {guild.name}")
            member_data = payloads.member(world, member)
            member_data["permissions"] = str(world.channel_permissions(channel, user.id))
            app_permissions = world.channel_permissions(channel, world.bot.id)
            payload.update(
                {
                    "guild_id": str(guild.id),
                    "guild_locale": guild.locale,
                    "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
                    "member": member_data,
                    "app_permissions": str(app_permissions),
                    "authorizing_integration_owners": {"0": str(guild.id)},
                    "context": 0,
                }
            )
        else:
            payload.update(
                {
                    "user": payloads.user(user),
                    "app_permissions": str(permissions.DEFAULT_EVERYONE),
                    "authorizing_integration_owners": {"0": "0"},
                    "context": 1,
                }
            )
        if source is not None:
            payload["message"] = payloads.message(world, self._base_url(), source)
        return payload

    # -- token checks ---------------------------------------------------
    def expired(self, record: InteractionRecord) -> bool:
        return self._clock.now() - record.created_at > self._config.interaction_ttl_s

    def is_interaction_token(self, token: str) -> bool:
        return token in self._world.interaction_tokens

    def by_token(self, application_id: int, token: str) -> InteractionRecord:
        """The interaction behind a webhook token; 404/10015 or 401/50027 otherwise."""
        record_id = self._world.interaction_tokens.get(token)
        if record_id is None or application_id != self._world.application_id:
            raise errors.unknown_webhook()
        record = self._world.interactions[record_id]
        if self.expired(record):
            raise errors.invalid_webhook_token()
        return record

    # -- initial response -----------------------------------------------
    def callback(self, interaction_id: int, token: str, body: ParsedBody) -> InteractionRecord:
        """``POST /interactions/{id}/{token}/callback``."""
        record = self._world.interactions.get(interaction_id)
        if record is None:
            raise errors.unknown_interaction()
        if record.token != token or self.expired(record):
            raise errors.invalid_webhook_token()
        if record.acknowledged:
            raise errors.already_acknowledged()
        if self._clock.now() - record.created_at > self._config.initial_response_deadline_s:
            raise errors.unknown_interaction()
        payload = body.payload
        response_type = int(payload.get("type") or 0)
        data = payload.get("data") or {}
        if response_type not in ALLOWED_RESPONSES.get(record.type, set()):
            raise errors.invalid_form_body(
                {
                    "type": errors.field_error(
                        "BASE_TYPE_CHOICES",
                        f"Value must be one of {sorted(ALLOWED_RESPONSES.get(record.type, []))}.",
                    )
                }
            )
        self._apply_callback(record, response_type, data, body)
        record.response_type = response_type
        record.acknowledged_at = self._clock.now()
        self._feed.notify()
        return record

    def _apply_callback(
        self, record: InteractionRecord, response_type: int, data: JsonObject, body: ParsedBody
    ) -> None:
        channel = self._world.channel(record.channel_id)
        if response_type == CHANNEL_MESSAGE:
            message = self._messages.create(
                channel=channel,
                payload=data,
                files=body.files,
                author=self.bot_author,
                allowed_flags=INTERACTION_FLAGS,
                root=["data"],
                interaction_id=record.id,
                webhook_id=record.application_id,
                application_id=record.application_id,
                message_type=CHAT_INPUT_COMMAND_MESSAGE
                if record.type == APPLICATION_COMMAND
                else 0,
            )
            record.original_message_id = message.id
            record.ephemeral = message.ephemeral
        elif response_type == DEFERRED_CHANNEL_MESSAGE:
            ephemeral = int(data.get("flags") or 0) & EPHEMERAL
            message = self._messages.create(
                channel=channel,
                payload={},
                files=[],
                author=self.bot_author,
                extra_flags=LOADING | ephemeral,
                interaction_id=record.id,
                webhook_id=record.application_id,
                application_id=record.application_id,
                message_type=CHAT_INPUT_COMMAND_MESSAGE
                if record.type == APPLICATION_COMMAND
                else 0,
                allow_empty=True,
            )
            record.original_message_id = message.id
            record.ephemeral = bool(ephemeral)
        elif response_type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            if record.source_message_id is None:
                raise errors.unknown_message()
            source = self._world.message(record.source_message_id)
            if response_type == UPDATE_MESSAGE:
                self._messages.edit(source, data, body.files, root=["data"])
            record.original_message_id = source.id
            record.ephemeral = source.ephemeral
        elif response_type == AUTOCOMPLETE_RESULT:
            choices = list(data.get("choices") or [])
            if len(choices) > 25:
                raise errors.invalid_form_body({"data": {"choices": errors.too_long(25)}})
            record.autocomplete_choices = choices
        elif response_type == MODAL:
            record.modal = dict(data)

    # -- token webhook --------------------------------------------------
    def followup(self, record: InteractionRecord, body: ParsedBody) -> Message:
        """``POST /webhooks/{app}/{token}``: a followup (or the deferred placeholder's content)."""
        if not record.acknowledged:
            raise errors.unknown_webhook()
        original = self._world.messages.get(record.original_message_id or 0)
        if (
            record.response_type == DEFERRED_CHANNEL_MESSAGE
            and original is not None
            and original.loading
            and not original.deleted
        ):
            return self._messages.fill_placeholder(original, body.payload, body.files)
        message = self._messages.create(
            channel=self._world.channel(record.channel_id),
            payload=body.payload,
            files=body.files,
            author=self.bot_author,
            allowed_flags=INTERACTION_FLAGS,
            interaction_id=record.id,
            webhook_id=record.application_id,
            application_id=record.application_id,
        )
        record.followup_ids.append(message.id)
        self._feed.notify()
        return message

    def message(self, record: InteractionRecord, ref: str) -> Message:
        """Resolve ``@original`` or a followup id belonging to this interaction."""
        if ref == "@original":
            if not record.acknowledged:
                raise errors.unknown_webhook()
            message_id = record.original_message_id
        else:
            try:
                message_id = int(ref)
            except ValueError:
                raise errors.unknown_message() from None
            if message_id != record.original_message_id and message_id not in record.followup_ids:
                raise errors.unknown_message()
        message = self._world.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise errors.unknown_message()
        return message

    def edit(self, record: InteractionRecord, ref: str, body: ParsedBody) -> Message:
        message = self.message(record, ref)
        return self._messages.edit(message, body.payload, body.files, allowed_flags=SUPPRESS_EMBEDS)

    def delete(self, record: InteractionRecord, ref: str) -> None:
        self._messages.delete(self.message(record, ref))
