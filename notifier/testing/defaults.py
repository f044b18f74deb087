"""The world every emulator starts with.

A bot, one guild owned by ``alice`` with ``bob`` (plain member) and
``carol`` (holds an ``admin`` role with MANAGE_GUILD), and two text
channels ``general`` and ``results`` -- enough to exercise permission
checks and "post results elsewhere" flows without any setup.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import permissions
from .model import Channel, Guild, Role, User
from .world import World


@dataclass(frozen=True)
class DefaultWorld:
    """Handles on the default entities."""

    guild: Guild
    users: dict[str, User]
    channels: dict[str, Channel]
    roles: dict[str, Role]


def build_default_world(world: World) -> DefaultWorld:
    """Populate ``world`` with the default guild, users, roles and channels."""
    alice = world.add_user("alice")
    bob = world.add_user("bob")
    carol = world.add_user("carol")
    guild = world.add_guild("Notifier Test Guild", alice)
    admin = world.add_role(guild.id, "admin", permissions.MANAGE_GUILD)
    bot_role = world.add_role(
        guild.id,
        world.bot.username,
        permissions.DEFAULT_EVERYONE | permissions.MANAGE_MESSAGES,
        managed=True,
    )
    world.add_member(guild.id, bob.id)
    world.add_member(guild.id, carol.id, [admin.id])
    world.add_member(guild.id, world.bot.id, [bot_role.id])
    general = world.add_text_channel(guild.id, "general", "General chatter")
    results = world.add_text_channel(guild.id, "results", "Workflow results")
    return DefaultWorld(
        guild=guild,
        users={"alice": alice, "bob": bob, "carol": carol},
        channels={"general": general, "results": results},
        roles={"everyone": guild.roles[guild.id], "admin": admin, "bot": bot_role},
    )
