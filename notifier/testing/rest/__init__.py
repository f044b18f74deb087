"""REST route table of the emulator (Discord API v10 subset used by bots)."""

from __future__ import annotations

from ..routing import RouteSpec
from . import app_commands, channels, misc, webhooks


def all_routes() -> list[RouteSpec]:
    """Every route, most specific first (``/users/@me`` before ``/users/{id}``)."""
    return [*misc.ROUTES, *app_commands.ROUTES, *channels.ROUTES, *webhooks.ROUTES]
