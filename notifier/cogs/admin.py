"""`/notifier reload`: apply an edited config.yaml without a restart (the bot's operators only)."""

from __future__ import annotations

import nextcord
from nextcord.ext import commands

from ..discord.access import is_operator
from ..discord.replies import defer, reply_ephemeral
from ..errors import ConfigError
from .services import Services

__all__ = ["AdminCog"]


class AdminCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @nextcord.slash_command(
        name="notifier",
        description="Operate the notifier",
        # Discord shows it only to members with Manage Server (server admins may change that in
        # their settings); who may run it is decided here, by `is_operator`, wherever it is seen.
        default_member_permissions=nextcord.Permissions(manage_guild=True),
    )
    async def notifier(self, interaction: nextcord.Interaction) -> None:
        """Parent of the subcommands; Discord never invokes it directly."""

    @notifier.subcommand(name="reload", description="Re-read config.yaml and apply its notifiers")
    async def reload(self, interaction: nextcord.Interaction) -> None:
        if not is_operator(interaction, self.services.settings.discord):
            await reply_ephemeral(interaction, "❌ Only the bot's operators may reload it.")
            return
        await defer(interaction, ephemeral=True)
        try:
            report = await self.services.reload_config()
        except ConfigError as exc:
            await reply_ephemeral(
                interaction,
                "❌ The new configuration was rejected; the old one stays.\n"
                + _code_block(exc.lines()),
            )
            return
        if report.left_out:
            await reply_ephemeral(interaction, f"⚠️ Reloaded. {_cut(report.line)}")
            return
        names = ", ".join(report.started) or "none"
        await reply_ephemeral(interaction, f"✅ Reloaded. Notifiers: {_cut(names)}")


# A reply holds at most 2000 characters; what the reload says must fit beside its first words.
_REPLY_BUDGET = 1800


def _cut(text: str) -> str:
    return text if len(text) <= _REPLY_BUDGET else text[: _REPLY_BUDGET - 1] + "…"


def _code_block(lines: list[str]) -> str:
    """Every line of a refused file, as many as fit (`notifier config check` prints them all)."""
    shown: list[str] = []
    for index, line in enumerate(lines):
        if sum(len(s) + 1 for s in shown) + len(line) > _REPLY_BUDGET - 80:
            more = len(lines) - index
            shown.append(f"... and {more} more (`notifier config check` shows them all)")
            break
        shown.append(line.replace("`", "'"))
    return "```\n" + "\n".join(shown) + "\n```"
