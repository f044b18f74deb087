"""Bot-token channel endpoints: messages, DMs and channel lookups.

Permission and DM rules are enforced here because only bot-token posts are
subject to them (interaction responses and webhooks are not): a channel
without SEND_MESSAGES for the bot answers 403/50013, a user with DMs closed
403/50007, a user sharing no guild 403/50278.
"""

from __future__ import annotations

from .. import errors, payloads, permissions
from ..model import DM, Author, Channel, Message
from ..routing import ApiResponse, RequestContext, RouteSpec, no_content


def _bot_author(ctx: RequestContext) -> Author:
    bot = ctx.state.world.bot
    return Author(id=bot.id, username=bot.username, bot=True)


def _require_view(ctx: RequestContext, channel: Channel) -> None:
    if channel.type == DM:
        return
    if not ctx.state.world.channel_permissions(channel, ctx.state.world.bot.id) & (
        permissions.VIEW_CHANNEL
    ):
        raise errors.missing_access()


def _require_post(ctx: RequestContext, channel: Channel, *, with_files: bool) -> None:
    world = ctx.state.world
    if channel.type == DM:
        recipient = world.user(channel.recipient_id or 0)
        if not recipient.dms_open:
            raise errors.cannot_message_user()
        if ctx.state.config.require_mutual_guild_for_dm and not world.shares_guild_with_bot(
            recipient.id
        ):
            raise errors.no_mutual_guilds()
        return
    _require_view(ctx, channel)
    granted = world.channel_permissions(channel, world.bot.id)
    needed = permissions.SEND_MESSAGES | (permissions.ATTACH_FILES if with_files else 0)
    if granted & needed != needed:
        raise errors.missing_permissions()


def _channel(ctx: RequestContext) -> Channel:
    return ctx.state.world.channel(ctx.snowflake("channel_id"))


def _message(ctx: RequestContext, channel: Channel) -> Message:
    message = ctx.state.world.messages.get(ctx.snowflake("message_id"))
    if message is None or message.channel_id != channel.id or message.deleted:
        raise errors.unknown_message()
    if message.ephemeral:
        raise errors.unknown_message()
    return message


async def create_message(ctx: RequestContext) -> ApiResponse:
    channel = _channel(ctx)
    _require_post(ctx, channel, with_files=bool(ctx.body.files))
    payload = ctx.body.payload
    nonce = payload.get("nonce")
    bot_id = ctx.state.world.bot.id
    if isinstance(nonce, str | int) and payload.get("enforce_nonce"):
        existing = ctx.state.messages.find_nonce(channel.id, bot_id, nonce)
        if existing is not None:
            return ApiResponse(body=ctx.state.message_json(existing))
    message = ctx.state.messages.create(
        channel=channel, payload=payload, files=ctx.body.files, author=_bot_author(ctx)
    )
    return ApiResponse(body=ctx.state.message_json(message))


async def get_message(ctx: RequestContext) -> ApiResponse:
    channel = _channel(ctx)
    _require_view(ctx, channel)
    return ApiResponse(body=ctx.state.message_json(_message(ctx, channel)))


async def edit_message(ctx: RequestContext) -> ApiResponse:
    channel = _channel(ctx)
    message = _message(ctx, channel)
    if message.author.id != ctx.state.world.bot.id or message.author.webhook_id:
        raise errors.cannot_edit_foreign_message()
    _require_post(ctx, channel, with_files=bool(ctx.body.files))
    edited = ctx.state.messages.edit(message, ctx.body.payload, ctx.body.files)
    return ApiResponse(body=ctx.state.message_json(edited))


async def delete_message(ctx: RequestContext) -> ApiResponse:
    channel = _channel(ctx)
    _require_view(ctx, channel)
    message = _message(ctx, channel)
    world = ctx.state.world
    own = message.author.id == world.bot.id
    if not own and not world.channel_permissions(channel, world.bot.id) & (
        permissions.MANAGE_MESSAGES
    ):
        raise errors.missing_permissions()
    ctx.state.messages.delete(message)
    return no_content()


async def list_messages(ctx: RequestContext) -> ApiResponse:
    channel = _channel(ctx)
    _require_view(ctx, channel)
    try:
        limit = max(1, min(100, int(ctx.request.query.get("limit", "50"))))
        before = int(ctx.request.query.get("before", "0"))
        after = int(ctx.request.query.get("after", "0"))
    except ValueError:
        raise errors.invalid_form_body(
            {"limit": errors.field_error("NUMBER_TYPE_COERCE", "Value is not int.")}
        ) from None
    visible = [
        m
        for m in ctx.state.world.messages_in(channel.id)
        if not m.deleted and not m.ephemeral and (not before or m.id < before) and m.id > after
    ]
    newest_first = list(reversed(visible))
    chosen = list(reversed(visible[:limit])) if after else newest_first[:limit]
    return ApiResponse(body=[ctx.state.message_json(m) for m in chosen])


async def get_channel(ctx: RequestContext) -> ApiResponse:
    channel = _channel(ctx)
    _require_view(ctx, channel)
    return ApiResponse(body=payloads.channel(ctx.state.world, channel))


async def trigger_typing(ctx: RequestContext) -> ApiResponse:
    _require_view(ctx, _channel(ctx))
    return no_content()


async def create_dm(ctx: RequestContext) -> ApiResponse:
    raw = ctx.body.payload.get("recipient_id")
    try:
        user = ctx.state.world.user(int(str(raw)))
    except ValueError:
        raise errors.invalid_form_body({"recipient_id": errors.required()}) from None
    channel = ctx.state.world.dm_channel(user.id)
    return ApiResponse(body=payloads.channel(ctx.state.world, channel))


_MESSAGE = "/channels/{channel_id}/messages/{message_id}"
_MAJOR = ("channel_id",)

ROUTES = [
    RouteSpec("POST", "/users/@me/channels", create_dm),
    RouteSpec("GET", "/channels/{channel_id}", get_channel),
    RouteSpec("POST", "/channels/{channel_id}/typing", trigger_typing),
    RouteSpec("GET", "/channels/{channel_id}/messages", list_messages),
    RouteSpec(
        "POST",
        "/channels/{channel_id}/messages",
        create_message,
        bucket="message_create",
        major=_MAJOR,
    ),
    RouteSpec("GET", _MESSAGE, get_message),
    RouteSpec("PATCH", _MESSAGE, edit_message, bucket="message_edit", major=_MAJOR),
    RouteSpec("DELETE", _MESSAGE, delete_message, bucket="message_delete", major=_MAJOR),
]
