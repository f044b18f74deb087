"""Identity, gateway discovery, application info and guild lookups."""

from __future__ import annotations

from .. import errors, payloads
from ..model import Guild
from ..routing import ApiResponse, RequestContext, RouteSpec


async def current_user(ctx: RequestContext) -> ApiResponse:
    bot = ctx.state.world.bot
    return ApiResponse(
        body={
            **payloads.user(bot),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
        }
    )


async def get_user(ctx: RequestContext) -> ApiResponse:
    return ApiResponse(body=payloads.user(ctx.state.world.user(ctx.snowflake("user_id"))))


async def gateway(ctx: RequestContext) -> ApiResponse:
    return ApiResponse(body={"url": ctx.state.gateway.url})


async def gateway_bot(ctx: RequestContext) -> ApiResponse:
    gateway = ctx.state.gateway
    return ApiResponse(
        body={
            "url": gateway.url,
            "shards": gateway.sharding.shards,
            "session_start_limit": gateway.session_start_limit(),
        }
    )


async def application(ctx: RequestContext) -> ApiResponse:
    world = ctx.state.world
    owner = world.users[ctx.state.defaults.guild.owner_id]
    return ApiResponse(
        body={
            "id": str(world.application_id),
            "name": world.bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": payloads.user(owner),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 0,
            "bot": payloads.user(world.bot),
        }
    )


def _bot_guild(ctx: RequestContext) -> Guild:
    guild = ctx.state.world.guild(ctx.snowflake("guild_id"))
    if ctx.state.world.bot.id not in guild.members:
        raise errors.missing_access()
    return guild


async def get_guild(ctx: RequestContext) -> ApiResponse:
    guild = _bot_guild(ctx)
    body = payloads.guild(ctx.state.world, guild, full=False)
    if ctx.flag("with_counts"):
        body["approximate_member_count"] = len(guild.members)
        body["approximate_presence_count"] = 0
    return ApiResponse(body=body)


async def get_member(ctx: RequestContext) -> ApiResponse:
    guild = _bot_guild(ctx)
    member = guild.members.get(ctx.snowflake("user_id"))
    if member is None:
        raise errors.unknown_member()
    return ApiResponse(body=payloads.member(ctx.state.world, member))


async def guild_channels(ctx: RequestContext) -> ApiResponse:
    guild = _bot_guild(ctx)
    world = ctx.state.world
    return ApiResponse(body=[payloads.channel(world, world.channels[c]) for c in guild.channel_ids])


async def guild_roles(ctx: RequestContext) -> ApiResponse:
    return ApiResponse(body=[payloads.role(r) for r in _bot_guild(ctx).roles.values()])


ROUTES = [
    RouteSpec("GET", "/users/@me", current_user),
    RouteSpec("GET", "/users/{user_id}", get_user),
    RouteSpec("GET", "/gateway", gateway, auth="none"),
    RouteSpec("GET", "/gateway/bot", gateway_bot),
    RouteSpec("GET", "/oauth2/applications/@me", application),
    RouteSpec("GET", "/applications/@me", application),
    RouteSpec("GET", "/guilds/{guild_id}", get_guild),
    RouteSpec("GET", "/guilds/{guild_id}/members/{user_id}", get_member),
    RouteSpec("GET", "/guilds/{guild_id}/channels", guild_channels),
    RouteSpec("GET", "/guilds/{guild_id}/roles", guild_roles),
]
