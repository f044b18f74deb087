"""The bot's slash commands, one cog per concern."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .admin import AdminCog
from .results import ResultsCog
from .workflows import WorkflowsCog

if TYPE_CHECKING:
    from ..app import NotifierBot

__all__ = ["add_cogs"]


def add_cogs(bot: NotifierBot) -> None:
    bot.add_cog(WorkflowsCog(bot))
    bot.add_cog(ResultsCog(bot))
    bot.add_cog(AdminCog(bot))
