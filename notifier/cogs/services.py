"""What the slash commands use, handed to each cog by the app: the cogs never see the bot class.

The cogs are the top floor: they parse a command, call one service and render the answer. Taking
the services (not `NotifierBot`) keeps the import arrows pointing one way: `app` builds the
services and the cogs, and no cog imports `app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ..config import Settings
from ..discord.io import DiscordIO
from ..runner import Runner
from ..store import ResultStore
from ..workflows import WorkflowSpec

__all__ = ["Services"]


@dataclass(frozen=True, slots=True)
class Services:
    """The bot's services, as the commands see them.

    `workflows` is the bot's own mapping (command name -> spec), so a workflow registered after
    the cogs were added is found. `reload_config` re-reads the config file and applies what can
    change at run time (it raises ConfigError and changes nothing for an invalid file).
    """

    settings: Settings
    store: ResultStore
    runner: Runner
    io: DiscordIO
    workflows: Mapping[str, WorkflowSpec]
    reload_config: Callable[[], Awaitable[Settings]]
