"""The bot's slash commands, one cog per concern; each takes the `Services` it uses."""

from __future__ import annotations

from nextcord.ext import commands

from .admin import AdminCog
from .results import ResultsCog
from .services import Services
from .workflows import WorkflowsCog

__all__ = ["AdminCog", "ResultsCog", "Services", "WorkflowsCog", "build_cogs"]


def build_cogs(services: Services) -> list[commands.Cog]:
    """The notifier's cogs, ready for `bot.add_cog` (the app adds them, after choosing the guilds
    their commands are rolled out to)."""
    return [WorkflowsCog(services), ResultsCog(services), AdminCog(services)]
