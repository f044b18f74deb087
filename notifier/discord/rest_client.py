"""A nextcord client that only speaks REST: what a worker process delivers with (no gateway).

A worker (``notifier worker``) posts progress and results through the same `DiscordIO` as the
bot: interaction follow-ups (token auth), channel messages and DMs (bot token). Those need a
logged-in client and the application's id (the interaction webhook routes carry it), which a
gateway connection would tell at READY; without one it is asked once over REST
(``GET /oauth2/applications/@me``) and given to the client at construction.
"""

from __future__ import annotations

import nextcord

from .compat import set_api_base

__all__ = ["rest_only_client"]


async def rest_only_client(token: str, *, api_base: str) -> nextcord.Client:
    """A logged-in client that never connects to the gateway; close it with ``await
    client.close()``. nextcord's LoginFailure for a refused token."""
    set_api_base(api_base)
    probe = nextcord.Client(intents=nextcord.Intents.none())
    try:
        await probe.login(token)
        application = await probe.application_info()
    finally:
        await probe.close()
    client = nextcord.Client(
        intents=nextcord.Intents.none(),
        application_id=application.id,
        allowed_mentions=nextcord.AllowedMentions.none(),
    )
    try:
        await client.login(token)
    except BaseException:
        await client.close()
        raise
    return client
