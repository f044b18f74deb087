"""The bot's slash commands, one cog per concern; each takes the `Services` it uses."""

from __future__ import annotations

from nextcord.ext import commands

from .admin import AdminCog
from .results import ResultsCog
from .services import Services
from .workflows import WorkflowsCog

__all__ = ["AdminCog", "ResultsCog", "Services", "WorkflowsCog", "add_cogs"]


def add_cogs(bot: commands.Bot, services: Services) -> None:
    bot.add_cog(WorkflowsCog(services))
    bot.add_cog(ResultsCog(services))
    bot.add_cog(AdminCog(services))
