"""The emulated Discord universe: users, guilds, channels and their messages.

One place owns every entity so REST handlers, the gateway and the test API
agree on ids and permissions. Lookups raise the ``DiscordError`` Discord
would answer with, so handlers can use them directly.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable

from . import errors, permissions
from .model import (
    DM,
    GUILD_TEXT,
    ApplicationCommand,
    Attachment,
    Channel,
    Guild,
    IncomingWebhook,
    InteractionRecord,
    Member,
    Message,
    Role,
    User,
)
from .permissions import Overwrite
from .snowflake import SnowflakeFactory

UserRef = int | str | User
ChannelRef = int | str | Channel


class World:
    """Registry of all entities, keyed by snowflake."""

    def __init__(self, ids: SnowflakeFactory, bot_username: str) -> None:
        self.ids = ids
        self.users: dict[int, User] = {}
        self.user_names: dict[str, int] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.channel_names: dict[str, int] = {}
        self.messages: dict[int, Message] = {}
        self.attachments: dict[int, Attachment] = {}
        self.channel_order: dict[int, list[int]] = {}
        self.dm_channels: dict[int, int] = {}
        self.webhooks: dict[int, IncomingWebhook] = {}
        self.commands: dict[int, ApplicationCommand] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.interaction_tokens: dict[str, int] = {}
        self.bot = self.add_user(bot_username, bot=True)
        self.application_id = self.bot.id
        raw_id = base64.urlsafe_b64encode(str(self.bot.id).encode()).decode().rstrip("=")
        self.bot_token = f"{raw_id}.emulator.{secrets.token_urlsafe(27)}"

    # -- creation -------------------------------------------------------
    def add_user(self, name: str, *, bot: bool = False, dms_open: bool = True) -> User:
        if name in self.user_names:
            raise ValueError(f"user {name!r} already exists")
        user = User(id=self.ids.next(), username=name, global_name=name.title(), bot=bot)
        user.dms_open = dms_open
        self.users[user.id] = user
        self.user_names[name] = user.id
        return user

    def add_guild(self, name: str, owner: User) -> Guild:
        guild = Guild(id=self.ids.next(), name=name, owner_id=owner.id)
        guild.roles[guild.id] = Role(
            id=guild.id, name="@everyone", permissions=permissions.DEFAULT_EVERYONE
        )
        self.guilds[guild.id] = guild
        self.add_member(guild.id, owner.id)
        return guild

    def add_role(
        self, guild_id: int, name: str, role_permissions: int, *, managed: bool = False
    ) -> Role:
        guild = self.guild(guild_id)
        role = Role(
            id=self.ids.next(),
            name=name,
            permissions=role_permissions,
            position=len(guild.roles),
            managed=managed,
        )
        guild.roles[role.id] = role
        return role

    def add_member(self, guild_id: int, user_id: int, role_ids: Iterable[int] = ()) -> Member:
        member = Member(user_id=user_id, role_ids=list(role_ids))
        self.guild(guild_id).members[user_id] = member
        return member

    def add_text_channel(self, guild_id: int, name: str, topic: str | None = None) -> Channel:
        guild = self.guild(guild_id)
        channel = Channel(
            id=self.ids.next(),
            type=GUILD_TEXT,
            name=name,
            guild_id=guild_id,
            position=len(guild.channel_ids),
            topic=topic,
        )
        self.channels[channel.id] = channel
        self.channel_names.setdefault(name, channel.id)
        self.channel_order[channel.id] = []
        guild.channel_ids.append(channel.id)
        return channel

    def dm_channel(self, user_id: int) -> Channel:
        """The bot's DM channel with a user, opened on first use."""
        existing = self.dm_channels.get(user_id)
        if existing is not None:
            return self.channels[existing]
        channel = Channel(id=self.ids.next(), type=DM, name=None, recipient_id=user_id)
        self.channels[channel.id] = channel
        self.channel_order[channel.id] = []
        self.dm_channels[user_id] = channel.id
        return channel

    def add_message(self, message: Message) -> None:
        self.messages[message.id] = message
        self.channel_order.setdefault(message.channel_id, []).append(message.id)

    # -- lookup ---------------------------------------------------------
    def guild(self, guild_id: int) -> Guild:
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise errors.unknown_guild() from None

    def channel(self, channel_id: int) -> Channel:
        try:
            return self.channels[channel_id]
        except KeyError:
            raise errors.unknown_channel() from None

    def user(self, user_id: int) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise errors.unknown_user() from None

    def message(self, message_id: int) -> Message:
        try:
            return self.messages[message_id]
        except KeyError:
            raise errors.unknown_message() from None

    def resolve_user(self, ref: UserRef) -> User:
        """Accept a ``User``, an id or a username (test convenience)."""
        if isinstance(ref, User):
            return ref
        if isinstance(ref, str):
            if ref not in self.user_names:
                raise KeyError(f"no user named {ref!r}; known: {sorted(self.user_names)}")
            return self.users[self.user_names[ref]]
        return self.user(ref)

    def resolve_channel(self, ref: ChannelRef) -> Channel:
        """Accept a ``Channel``, an id or a channel name."""
        if isinstance(ref, Channel):
            return ref
        if isinstance(ref, str):
            if ref not in self.channel_names:
                raise KeyError(f"no channel named {ref!r}; known: {sorted(self.channel_names)}")
            return self.channels[self.channel_names[ref]]
        return self.channel(ref)

    def messages_in(self, channel_id: int) -> list[Message]:
        return [self.messages[mid] for mid in self.channel_order.get(channel_id, [])]

    def shares_guild_with_bot(self, user_id: int) -> bool:
        return any(user_id in g.members and self.bot.id in g.members for g in self.guilds.values())

    # -- permissions ----------------------------------------------------
    def member_permissions(self, guild: Guild, user_id: int) -> int:
        member = guild.members.get(user_id)
        if member is None:
            return 0
        return permissions.base_permissions(
            is_owner=guild.owner_id == user_id,
            everyone=guild.roles[guild.id].permissions,
            role_permissions=(
                guild.roles[rid].permissions for rid in member.role_ids if rid in guild.roles
            ),
        )

    def channel_permissions(self, channel: Channel, user_id: int) -> int:
        """Effective permissions of a user in a channel (DMs: sending is allowed)."""
        if channel.guild_id is None:
            return permissions.DEFAULT_EVERYONE
        guild = self.guild(channel.guild_id)
        member = guild.members.get(user_id)
        if member is None:
            return 0
        return permissions.apply_overwrites(
            self.member_permissions(guild, user_id),
            channel.overwrites,
            guild_id=guild.id,
            member_id=user_id,
            role_ids=member.role_ids,
        )

    def set_bot_posting(self, channel: Channel, allowed: bool) -> None:
        """Add or remove a member overwrite that denies the bot posting rights."""
        channel.overwrites = [
            ow
            for ow in channel.overwrites
            if not (ow.kind == permissions.MEMBER_OVERWRITE and ow.target_id == self.bot.id)
        ]
        if not allowed:
            channel.overwrites.append(
                Overwrite(
                    target_id=self.bot.id,
                    kind=permissions.MEMBER_OVERWRITE,
                    deny=permissions.POSTING,
                )
            )
