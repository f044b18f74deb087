"""What the slash commands use, handed to each cog by the app: the cogs never see the bot class.

The cogs are the top floor: they parse a command, call one service and render the answer. Taking
the services (not `NotifierBot`) keeps the import arrows pointing one way: `app` builds the
services and the cogs, and no cog imports `app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Protocol

from ..config import Settings
from ..discord.io import DiscordIO
from ..fanout.dispatch import NotifierReport
from ..runner import Runner
from ..store import Store
from ..workflows import WorkflowSpec

__all__ = ["Services"]


class Services(Protocol):
    """The bot's services, as the commands see them (the app's `Notifier` is one).

    Read when a command runs, not when the cog is made: the notifier opens its store and runner
    with the bot's first connect, after the cogs were added. `workflows` is the live mapping
    (command name -> spec), so a workflow registered after the cogs were added is found.
    `reload_config` re-reads the config file and applies what can change at run time by the
    rules of a start (it raises ConfigError, every problem in it, and changes nothing for a file
    it refuses; otherwise it reports the notifiers started and the ones left out).
    """

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def runner(self) -> Runner: ...

    @property
    def io(self) -> DiscordIO: ...

    @property
    def workflows(self) -> Mapping[str, WorkflowSpec]: ...

    def reload_config(self) -> Awaitable[NotifierReport]: ...
