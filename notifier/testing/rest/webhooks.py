"""Token-authenticated routes: interaction callback, followups, incoming webhooks.

``/webhooks/{id}/{token}`` serves two kinds of tokens, as on Discord: an
interaction token (id = application id; lives ``interaction_ttl_s``) and a
channel webhook created with ``DiscordEmulator.create_incoming_webhook``.
"""

from __future__ import annotations

from .. import errors, payloads
from ..model import Author, IncomingWebhook, InteractionRecord, Message
from ..routing import ApiResponse, RequestContext, RouteSpec, no_content


async def interaction_callback(ctx: RequestContext) -> ApiResponse:
    state = ctx.state
    record = state.interactions.callback(
        ctx.snowflake("interaction_id"), ctx.params["interaction_token"], ctx.body
    )
    if not ctx.flag("with_response"):
        return no_content()
    message = state.world.messages.get(record.original_message_id or 0)
    resource: dict[str, object] = {"type": record.response_type}
    if message is not None:
        resource["message"] = state.message_json(message)
    return ApiResponse(
        body={
            "interaction": {
                "id": str(record.id),
                "type": record.type,
                "activity_instance_id": None,
                "response_message_id": str(message.id) if message else None,
                "response_message_loading": message.loading if message else False,
                "response_message_ephemeral": message.ephemeral if message else False,
            },
            "resource": resource,
        }
    )


def _target(ctx: RequestContext) -> tuple[InteractionRecord | None, IncomingWebhook | None]:
    webhook_id = ctx.snowflake("webhook_id")
    token = ctx.params["webhook_token"]
    if ctx.state.interactions.is_interaction_token(token):
        return ctx.state.interactions.by_token(webhook_id, token), None
    hook = ctx.state.world.webhooks.get(webhook_id)
    if hook is None or hook.token != token:
        raise errors.unknown_webhook()
    return None, hook


def _hook_message(ctx: RequestContext, hook: IncomingWebhook) -> Message:
    ref = ctx.params["message_id"]
    message = ctx.state.world.messages.get(int(ref)) if ref.isdigit() else None
    if message is None or message.webhook_id != hook.id or message.deleted:
        raise errors.unknown_message()
    return message


async def execute(ctx: RequestContext) -> ApiResponse:
    record, hook = _target(ctx)
    state = ctx.state
    if record is not None:
        # Followups always answer with the message (Discord forces wait=true).
        return ApiResponse(body=state.message_json(state.interactions.followup(record, ctx.body)))
    assert hook is not None
    payload = ctx.body.payload
    author = Author(
        id=hook.id,
        username=str(payload.get("username") or hook.name),
        bot=True,
        webhook_id=hook.id,
        avatar_url=payload.get("avatar_url"),
    )
    message = state.messages.create(
        channel=state.world.channel(hook.channel_id),
        payload=payload,
        files=ctx.body.files,
        author=author,
        webhook_id=hook.id,
    )
    return ApiResponse(body=state.message_json(message)) if ctx.flag("wait") else no_content()


async def get_webhook(ctx: RequestContext) -> ApiResponse:
    record, hook = _target(ctx)
    if hook is not None:
        return ApiResponse(body=payloads.webhook(hook))
    assert record is not None
    world = ctx.state.world
    return ApiResponse(
        body={
            "id": str(world.application_id),
            "type": 3,
            "application_id": str(world.application_id),
            "name": world.bot.username,
            "avatar": None,
            "token": record.token,
            "channel_id": str(record.channel_id),
            "guild_id": str(record.guild_id) if record.guild_id else None,
        }
    )


async def get_message(ctx: RequestContext) -> ApiResponse:
    record, hook = _target(ctx)
    if record is not None:
        message = ctx.state.interactions.message(record, ctx.params["message_id"])
    else:
        assert hook is not None
        message = _hook_message(ctx, hook)
    return ApiResponse(body=ctx.state.message_json(message))


async def edit_message(ctx: RequestContext) -> ApiResponse:
    record, hook = _target(ctx)
    if record is not None:
        message = ctx.state.interactions.edit(record, ctx.params["message_id"], ctx.body)
    else:
        assert hook is not None
        message = ctx.state.messages.edit(
            _hook_message(ctx, hook), ctx.body.payload, ctx.body.files
        )
    return ApiResponse(body=ctx.state.message_json(message))


async def delete_message(ctx: RequestContext) -> ApiResponse:
    record, hook = _target(ctx)
    if record is not None:
        ctx.state.interactions.delete(record, ctx.params["message_id"])
    else:
        assert hook is not None
        ctx.state.messages.delete(_hook_message(ctx, hook))
    return no_content()


_HOOK = "/webhooks/{webhook_id}/{webhook_token}"
_MAJOR = ("webhook_id", "webhook_token")

ROUTES = [
    RouteSpec(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        interaction_callback,
        auth="token",
    ),
    RouteSpec("POST", _HOOK, execute, auth="token", bucket="webhook_execute", major=_MAJOR),
    RouteSpec("GET", _HOOK, get_webhook, auth="token"),
    RouteSpec(
        "GET",
        _HOOK + "/messages/{message_id}",
        get_message,
        auth="token",
        bucket="webhook_message",
        major=_MAJOR,
    ),
    RouteSpec(
        "PATCH",
        _HOOK + "/messages/{message_id}",
        edit_message,
        auth="token",
        bucket="webhook_message",
        major=_MAJOR,
    ),
    RouteSpec(
        "DELETE",
        _HOOK + "/messages/{message_id}",
        delete_message,
        auth="token",
        bucket="webhook_message",
        major=_MAJOR,
    ),
]
