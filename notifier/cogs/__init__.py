"""The bot's slash commands, one cog per concern; each takes the `Services` it uses."""

from __future__ import annotations

from collections.abc import Iterable

from nextcord.ext import commands

from ..workflows.api import Workflow
from .admin import AdminCog
from .results import ResultsCog
from .services import Services
from .workflow_commands import workflows_cog
from .workflows import WorkflowsCog

__all__ = ["AdminCog", "ResultsCog", "Services", "WorkflowsCog", "build_cogs"]


def build_cogs(services: Services, workflows: Iterable[Workflow] = ()) -> list[commands.Cog]:
    """The notifier's cogs, ready for `bot.add_cog` (the app adds them, after choosing the guilds
    their commands are rolled out to): one slash command per workflow in `workflows` (read
    from its signature), `/workflow`, the results commands and the admin ones."""
    return [workflows_cog(services, workflows), ResultsCog(services), AdminCog(services)]
