"""Test support: a loopback Discord API emulator for nextcord bots.

Typical use with the bundled pytest plugin::

    async def test_status(discord_emulator):
        bot = make_bot()                       # a real nextcord client
        async with await connect_client(bot, discord_emulator):
            handle = await discord_emulator.trigger_command("status")
            message = await handle.wait_for_message()

See :class:`DiscordEmulator` for the test API and :class:`EmulatorConfig`
for the Discord rules it enforces. Helpers for what lies around a bot: `text_of`
and `every_message` (what people read), `wait_until` (state outside the
emulator), `HttpSink` (what notifiers post), `CapturedProcess`/`bot_process`
(the bot as a real process); see README.md beside this file.
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
from .loopback import LoopbackServer, free_port
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
from .polling import wait_until
from .processes import BotProcess, CapturedProcess, bot_process, child_env
from .ratelimit import RateLimitRule, default_rate_limits
from .reading import every_message, message_texts, text_of
from .recording import EmulatorStats, RequestRecord
from .sinks import HttpSink, Received

__all__ = [
    "ApplicationCommand",
    "Attachment",
    "AttachmentOption",
    "Author",
    "BotProcess",
    "CapturedProcess",
    "Channel",
    "ConnectedClient",
    "DiscordEmulator",
    "DiscordError",
    "EmulatorConfig",
    "EmulatorStats",
    "Fault",
    "FaultKind",
    "GatewayConnection",
    "HttpSink",
    "InteractionHandle",
    "LoopbackServer",
    "Message",
    "MessageLimits",
    "MessageVersion",
    "RateLimitRule",
    "Received",
    "RequestRecord",
    "Role",
    "User",
    "bot_process",
    "child_env",
    "connect_client",
    "default_rate_limits",
    "every_message",
    "free_port",
    "message_texts",
    "patch_route_base",
    "permissions",
    "text_of",
    "wait_until",
]
