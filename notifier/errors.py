"""One root exception and a small tree under it, so callers catch by meaning, not by message text."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeliveryFailed",
    "DiscordCallFailed",
    "InteractionExpired",
    "InvalidWorkflowId",
    "NextcordIncompatible",
    "NotifierError",
    "PluginError",
    "SessionClosed",
    "StoreError",
    "StoreLocked",
]


class NotifierError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(NotifierError):
    """A configuration value is missing or wrong.

    `field` is the dotted path of the offending key (``notifiers[2].on``) so the message can be
    shown to an operator as one line that points at the line to fix.
    """

    def __init__(self, field: str, message: str, *, source: str | None = None) -> None:
        self.field = field
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        location = f"{field}: " if field else ""
        super().__init__(_one_line(f"{where}{location}{message}"))

    def lines(self) -> list[str]:
        """What to show the operator, one line per problem: this one error's line here; an
        error that gathers every mistake of a file gives one line for each."""
        return [str(self)]


def _one_line(text: str) -> str:
    """`text` with every line break and other unprintable character escaped (a YAML key may hold
    a newline, a value U+2028), so the message stays the one line it promises to be."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


class InvalidWorkflowId(NotifierError, ValueError):
    """A workflow id is not one this store could have issued; it never reaches the filesystem."""


class StoreError(NotifierError):
    """The result store could not do what was asked (disk full, permission denied, corrupt file)."""


class StoreLocked(StoreError):
    """Another process holds the store's lock (``<storage.path>/lock``): a second bot on the same
    folder would mark the first one's running workflows interrupted, refuse its results and send
    every notice twice, so it must not start.

    `path` is the store's folder and `pid` the holder's process id as it wrote it in the lock file
    (None if unreadable). The message is the one line to show (`bot.py` exits 2 with it).
    """

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"PID {pid}" if pid is not None else "a process whose PID is unknown"
        super().__init__(
            _one_line(
                f"storage.path {path} is locked by {holder} (another bot, or the CLI purging "
                "it): stop that process, or give this bot its own storage.path"
            )
        )


class DiscordCallFailed(NotifierError):
    """A Discord call failed in a way the delivery ladder acts on.

    `kind` is the classification (see `notifier.discord.session.FailureKind`); `status` and `code`
    are Discord's HTTP status and JSON error code when there was a response.
    """

    def __init__(
        self, kind: str, message: str, *, status: int | None = None, code: int | None = None
    ) -> None:
        self.kind = kind
        self.status = status
        self.code = code
        super().__init__(message)


class InteractionExpired(DiscordCallFailed):
    """The interaction token is dead (or about to be): no call may be made with it any more."""


class SessionClosed(DiscordCallFailed):
    """The client's HTTP session is closed; calls wait for a fresh one or move to the next rung."""


class DeliveryFailed(NotifierError):
    """Every rung of the delivery ladder failed; the result is safe in the store."""


class NextcordIncompatible(NotifierError, ImportError):
    """The installed nextcord lacks a private name the bot relies on (`notifier.discord.compat`).

    Raised when `notifier.discord.compat` is imported; the message is one line naming the installed
    version and the tested range, so `bot.py` can print it and stop instead of failing later, at
    every reply, with an AttributeError.
    """


class PluginError(NotifierError):
    """A notifier plugin could not be loaded or configured."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")
