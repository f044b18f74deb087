"""In-memory records of everything the emulator knows about.

Plain dataclasses, no behaviour beyond derived properties: the services
mutate them and tests read them. Message records keep their edit history so
a test can assert what a person saw over time, not just the final state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .permissions import Overwrite
from .snowflake import utcnow

JsonObject = dict[str, Any]

GUILD_TEXT = 0
DM = 1

EPHEMERAL = 1 << 6
LOADING = 1 << 7


@dataclass
class User:
    """A Discord user; ``dms_open=False`` makes DMs to them fail with 50007."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    dms_open: bool = True


@dataclass
class Role:
    """A guild role. The @everyone role shares the guild's id."""

    id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    managed: bool = False


@dataclass
class Member:
    """A user's membership in a guild."""

    user_id: int
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: datetime = field(default_factory=utcnow)


@dataclass
class Channel:
    """A guild text channel (type 0) or the bot's DM with a user (type 1)."""

    id: int
    type: int
    name: str | None
    guild_id: int | None = None
    position: int = 0
    topic: str | None = None
    recipient_id: int | None = None
    overwrites: list[Overwrite] = field(default_factory=list)


@dataclass
class Guild:
    """A guild with its roles, members and channel ids (in position order)."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    locale: str = "en-US"


@dataclass(frozen=True)
class Attachment:
    """An uploaded file, with its bytes so tests can inspect what was sent."""

    id: int
    filename: str
    size: int
    content: bytes = field(repr=False)
    content_type: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Author:
    """Who a message appears to come from (bot, webhook or user)."""

    id: int
    username: str
    bot: bool = True
    webhook_id: int | None = None
    avatar_url: str | None = None


@dataclass(frozen=True)
class MessageVersion:
    """One state of a message; ``Message.history`` holds the replaced ones.

    ``allowed_mentions`` is what the request that made this state said (``None``: it said
    nothing, and Discord then pings every mention in the content).
    """

    content: str
    embeds: list[JsonObject]
    attachments: list[Attachment]
    components: list[JsonObject]
    flags: int
    edited_at: datetime | None
    allowed_mentions: JsonObject | None = None


@dataclass
class Message:
    """A message as stored by Discord, including deleted ones and old versions."""

    id: int
    channel_id: int
    author: Author
    content: str = ""
    embeds: list[JsonObject] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    components: list[JsonObject] = field(default_factory=list)
    flags: int = 0
    created_at: datetime = field(default_factory=utcnow)
    edited_at: datetime | None = None
    deleted: bool = False
    history: list[MessageVersion] = field(default_factory=list)
    guild_id: int | None = None
    interaction_id: int | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    nonce: str | int | None = None
    message_type: int = 0
    tts: bool = False
    # What the request that made the current state said (see MessageVersion).
    allowed_mentions: JsonObject | None = None

    @property
    def ephemeral(self) -> bool:
        """Only the invoking user can see it (flag 64)."""
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """The "Bot is thinking..." placeholder left by a deferred response."""
        return bool(self.flags & LOADING)

    def snapshot(self) -> MessageVersion:
        """The current state as an immutable version."""
        return MessageVersion(
            content=self.content,
            embeds=list(self.embeds),
            attachments=list(self.attachments),
            components=list(self.components),
            flags=self.flags,
            edited_at=self.edited_at,
            allowed_mentions=self.allowed_mentions,
        )

    @property
    def versions(self) -> list[MessageVersion]:
        """Every state the message has had, oldest first, current last."""
        return [*self.history, self.snapshot()]


@dataclass
class IncomingWebhook:
    """A channel webhook that Apprise or ``Webhook.from_url`` can post to."""

    id: int
    token: str
    channel_id: int
    guild_id: int | None
    name: str


@dataclass
class ApplicationCommand:
    """A registered application command; ``payload`` is what the bot sent."""

    id: int
    application_id: int
    guild_id: int | None
    payload: JsonObject
    version: int

    @property
    def name(self) -> str:
        return str(self.payload.get("name", ""))

    @property
    def type(self) -> int:
        return int(self.payload.get("type", 1))

    @property
    def options(self) -> list[JsonObject]:
        return list(self.payload.get("options") or [])


APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5


@dataclass
class InteractionRecord:
    """Server-side state of one interaction and of its 15-minute token."""

    id: int
    token: str
    type: int
    application_id: int
    channel_id: int
    guild_id: int | None
    user_id: int
    data: JsonObject
    payload: JsonObject
    created_at: float
    source_message_id: int | None = None
    response_type: int | None = None
    acknowledged_at: float | None = None
    ephemeral: bool = False
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    autocomplete_choices: list[JsonObject] | None = None
    modal: JsonObject | None = None

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None
