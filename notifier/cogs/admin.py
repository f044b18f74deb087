"""`/notifier reload`: apply an edited config.yaml without a restart (admins only)."""

from __future__ import annotations

import nextcord
from nextcord.ext import commands

from ..discord.access import is_admin
from ..discord.replies import defer, reply_ephemeral
from ..errors import ConfigError
from .services import Services

__all__ = ["AdminCog"]


class AdminCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @nextcord.slash_command(name="notifier", description="Operate the notifier")
    async def notifier(self, interaction: nextcord.Interaction) -> None:
        """Parent of the subcommands; Discord never invokes it directly."""

    @notifier.subcommand(name="reload", description="Re-read config.yaml and apply its notifiers")
    async def reload(self, interaction: nextcord.Interaction) -> None:
        if not is_admin(interaction, self.services.settings.discord.admin_role_ids):
            await reply_ephemeral(interaction, "❌ Only server admins may reload the notifier.")
            return
        await defer(interaction, ephemeral=True)
        try:
            settings = await self.services.reload_config()
        except ConfigError as exc:
            await reply_ephemeral(
                interaction, f"❌ The new configuration was rejected; the old one stays.\n`{exc}`"
            )
            return
        names = ", ".join(entry.name for entry in settings.notifiers) or "none"
        await reply_ephemeral(interaction, f"✅ Reloaded. Notifiers: {names}")
