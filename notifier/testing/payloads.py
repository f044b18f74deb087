"""Model records rendered as Discord API v10 JSON objects.

Field sets follow what nextcord 3.2 dereferences without ``.get`` (e.g.
``Message`` needs ``tts``/``pinned``/``mention_everyone``), so every object
the emulator returns can be parsed by the real client.
"""

from __future__ import annotations

from .model import (
    DM,
    ApplicationCommand,
    Attachment,
    Author,
    Channel,
    Guild,
    IncomingWebhook,
    JsonObject,
    Member,
    Message,
    Role,
    User,
)
from .snowflake import iso
from .world import World


def user(record: User) -> JsonObject:
    return {
        "id": str(record.id),
        "username": record.username,
        "global_name": record.global_name,
        "discriminator": "0",
        "avatar": None,
        "bot": record.bot,
        "system": False,
        "public_flags": 0,
        "flags": 0,
    }


def author(record: Author) -> JsonObject:
    return {
        "id": str(record.id),
        "username": record.username,
        "global_name": None if record.webhook_id else record.username,
        "discriminator": "0000" if record.webhook_id else "0",
        "avatar": None,
        "bot": record.bot,
        "public_flags": 0,
    }


def role(record: Role) -> JsonObject:
    return {
        "id": str(record.id),
        "name": record.name,
        "permissions": str(record.permissions),
        "position": record.position,
        "color": record.color,
        "hoist": record.hoist,
        "managed": record.managed,
        "mentionable": record.mentionable,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def member(world: World, record: Member, *, with_user: bool = True) -> JsonObject:
    data: JsonObject = {
        "roles": [str(r) for r in record.role_ids],
        "nick": record.nick,
        "avatar": None,
        "joined_at": iso(record.joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }
    if with_user:
        data["user"] = user(world.users[record.user_id])
    return data


def channel(world: World, record: Channel) -> JsonObject:
    if record.type == DM:
        recipient = world.users[record.recipient_id] if record.recipient_id else None
        return {
            "id": str(record.id),
            "type": DM,
            "last_message_id": None,
            "flags": 0,
            "recipients": [user(recipient)] if recipient else [],
        }
    return {
        "id": str(record.id),
        "type": record.type,
        "guild_id": str(record.guild_id),
        "name": record.name,
        "position": record.position,
        "topic": record.topic,
        "nsfw": False,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "parent_id": None,
        "flags": 0,
        "permission_overwrites": [
            {
                "id": str(ow.target_id),
                "type": ow.kind,
                "allow": str(ow.allow),
                "deny": str(ow.deny),
            }
            for ow in record.overwrites
        ],
    }


def guild(world: World, record: Guild, *, full: bool = True) -> JsonObject:
    data: JsonObject = {
        "id": str(record.id),
        "name": record.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(record.owner_id),
        "roles": [role(r) for r in record.roles.values()],
        "emojis": [],
        "stickers": [],
        "features": [],
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "afk_timeout": 300,
        "afk_channel_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": record.locale,
        "application_id": None,
        "vanity_url_code": None,
        "max_members": 500000,
    }
    if full:
        data.update(
            {
                "unavailable": False,
                "large": False,
                "member_count": len(record.members),
                "joined_at": iso(record.members[world.bot.id].joined_at)
                if world.bot.id in record.members
                else None,
                "members": [member(world, m) for m in record.members.values()],
                "channels": [channel(world, world.channels[c]) for c in record.channel_ids],
                "threads": [],
                "voice_states": [],
                "presences": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
    return data


def attachment(base_url: str, channel_id: int, record: Attachment) -> JsonObject:
    url = f"{base_url}/attachments/{channel_id}/{record.id}/{record.filename}"
    return {
        "id": str(record.id),
        "filename": record.filename,
        "size": record.size,
        "url": url,
        "proxy_url": url,
        "content_type": record.content_type,
        "description": record.description,
    }


def message(world: World, base_url: str, record: Message) -> JsonObject:
    data: JsonObject = {
        "id": str(record.id),
        "channel_id": str(record.channel_id),
        "author": author(record.author),
        "content": record.content,
        "timestamp": iso(record.created_at),
        "edited_timestamp": iso(record.edited_at),
        "tts": record.tts,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [attachment(base_url, record.channel_id, a) for a in record.attachments],
        "embeds": [{"type": "rich", **e} for e in record.embeds],
        "components": record.components,
        "pinned": False,
        "type": record.message_type,
        "flags": record.flags,
    }
    if record.guild_id is not None:
        data["guild_id"] = str(record.guild_id)
    if record.nonce is not None:
        data["nonce"] = record.nonce
    if record.webhook_id is not None:
        data["webhook_id"] = str(record.webhook_id)
    if record.application_id is not None:
        data["application_id"] = str(record.application_id)
    interaction = world.interactions.get(record.interaction_id or 0)
    if interaction is not None and interaction.original_message_id == record.id:
        data["interaction"] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "name": str(interaction.data.get("name", "")),
            "user": user(world.users[interaction.user_id]),
        }
    return data


def command(record: ApplicationCommand) -> JsonObject:
    """Echo the registered payload plus server fields, so nextcord's deep check passes."""
    data: JsonObject = {
        **record.payload,
        "id": str(record.id),
        "application_id": str(record.application_id),
        "version": str(record.version),
        "type": record.type,
    }
    if record.guild_id is not None:
        data["guild_id"] = str(record.guild_id)
    return data


def webhook(record: IncomingWebhook, application_id: int | None = None) -> JsonObject:
    return {
        "id": str(record.id),
        "type": 1,
        "token": record.token,
        "channel_id": str(record.channel_id),
        "guild_id": str(record.guild_id) if record.guild_id else None,
        "name": record.name,
        "avatar": None,
        "application_id": str(application_id) if application_id else None,
    }
