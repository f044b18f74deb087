"""Test support: a loopback Discord API emulator for nextcord bots.

Typical use with the bundled pytest plugin::

    async def test_status(discord_emulator):
        bot = make_bot()                       # a real nextcord client
        async with await connect_client(bot, discord_emulator):
            handle = await discord_emulator.trigger_command("status")
            message = await handle.wait_for_message()

See :class:`DiscordEmulator` for the test API and :class:`EmulatorConfig`
for the Discord rules it enforces.
"""

from __future__ import annotations

from . import permissions
from .config import EmulatorConfig
from .emulator import DiscordEmulator
from .errors import DiscordError
from .faults import Fault, FaultKind
from .gateway import GatewayConnection
from .handle import InteractionHandle
from .limits import MessageLimits
from .model import (
    ApplicationCommand,
    Attachment,
    Author,
    Channel,
    Message,
    MessageVersion,
    Role,
    User,
)
from .nextcord_support import ConnectedClient, connect_client, patch_route_base
from .options import AttachmentOption
from .ratelimit import RateLimitRule, default_rate_limits
from .recording import EmulatorStats, RequestRecord

__all__ = [
    "ApplicationCommand",
    "Attachment",
    "AttachmentOption",
    "Author",
    "Channel",
    "ConnectedClient",
    "DiscordEmulator",
    "DiscordError",
    "EmulatorConfig",
    "EmulatorStats",
    "Fault",
    "FaultKind",
    "GatewayConnection",
    "InteractionHandle",
    "Message",
    "MessageLimits",
    "MessageVersion",
    "RateLimitRule",
    "RequestRecord",
    "Role",
    "User",
    "connect_client",
    "default_rate_limits",
    "patch_route_base",
    "permissions",
]
