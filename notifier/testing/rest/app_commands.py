"""Global and guild application command endpoints (list, upsert, edit, delete, bulk)."""

from __future__ import annotations

from .. import errors, payloads
from ..routing import ApiResponse, RequestContext, RouteSpec, no_content


def _scope(ctx: RequestContext) -> int | None:
    if ctx.snowflake("application_id") != ctx.state.world.application_id:
        raise errors.not_your_application()
    if "guild_id" not in ctx.params:
        return None
    guild_id = ctx.snowflake("guild_id")
    guild = ctx.state.world.guild(guild_id)
    if ctx.state.world.bot.id not in guild.members:
        raise errors.missing_access()
    return guild_id


async def list_commands(ctx: RequestContext) -> ApiResponse:
    commands = ctx.state.commands.in_scope(_scope(ctx))
    return ApiResponse(body=[payloads.command(c) for c in commands])


async def upsert_command(ctx: RequestContext) -> ApiResponse:
    command, created = ctx.state.commands.upsert(ctx.body.payload, _scope(ctx))
    return ApiResponse(201 if created else 200, payloads.command(command))


async def bulk_overwrite(ctx: RequestContext) -> ApiResponse:
    items = ctx.body.json if isinstance(ctx.body.json, list) else []
    commands = ctx.state.commands.overwrite(items, _scope(ctx))
    return ApiResponse(body=[payloads.command(c) for c in commands])


async def get_command(ctx: RequestContext) -> ApiResponse:
    command = ctx.state.commands.get(ctx.snowflake("command_id"), _scope(ctx))
    return ApiResponse(body=payloads.command(command))


async def edit_command(ctx: RequestContext) -> ApiResponse:
    command = ctx.state.commands.edit(ctx.snowflake("command_id"), _scope(ctx), ctx.body.payload)
    return ApiResponse(body=payloads.command(command))


async def delete_command(ctx: RequestContext) -> ApiResponse:
    ctx.state.commands.delete(ctx.snowflake("command_id"), _scope(ctx))
    return no_content()


async def command_permissions(ctx: RequestContext) -> ApiResponse:
    _scope(ctx)
    return ApiResponse(body=[])


_GLOBAL = "/applications/{application_id}/commands"
_GUILD = "/applications/{application_id}/guilds/{guild_id}/commands"

ROUTES = [
    RouteSpec("GET", _GUILD + "/permissions", command_permissions),
    *(
        route
        for base in (_GLOBAL, _GUILD)
        for route in (
            RouteSpec("GET", base, list_commands),
            RouteSpec("POST", base, upsert_command),
            RouteSpec("PUT", base, bulk_overwrite),
            RouteSpec("GET", base + "/{command_id}", get_command),
            RouteSpec("PATCH", base + "/{command_id}", edit_command),
            RouteSpec("DELETE", base + "/{command_id}", delete_command),
        )
    ),
]
