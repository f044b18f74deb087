"""One root exception and a small tree under it, so callers catch by meaning, not by message text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
    "StepNotStorable",
    "StepTooLarge",
    "StoreError",
    "StoreLocked",
]


class NotifierError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(NotifierError):
    """A configuration value is missing or wrong.

    `field` is the dotted path of the offending key (``notifiers[2].on``), `source` the file and
    `line` the line of that key in it (1-based; None when not known), so each problem shows as one
    line that points at the line to fix: ``config.yaml:12: notifiers[2].on: unknown event``.

    A file usually holds more than one mistake and the operator should see them all at once:
    `ConfigError.gather` makes one error of several. Its own `field`, `message` and `line` are the
    first problem's, `problems` holds every one, `lines()` gives one line for each, and `str()`
    stays one line (the first, and how many more) for callers that show a single line.
    """

    def __init__(
        self,
        field: str,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        problems: Sequence[ConfigError] = (),
    ) -> None:
        self.field = field
        self.message = message
        self.source = source
        self.line = line
        self.problems: tuple[ConfigError, ...] = tuple(problems) or (self,)
        text = _one_line(self._where() + message)
        if len(self.problems) > 1:
            more = len(self.problems) - 1
            text += f" (and {more} more mistake{'s' if more > 1 else ''})"
        super().__init__(text)

    def _where(self) -> str:
        if self.source is not None and self.line is not None:
            where = f"{self.source}:{self.line}: "
        elif self.source is not None:
            where = f"{self.source}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        else:
            where = ""
        return where + (f"{self.field}: " if self.field else "")

    @classmethod
    def gather(cls, errors: Iterable[ConfigError]) -> ConfigError:
        """One error holding every problem of `errors` (each gathered error's own problems are
        taken apart, so nothing nests). Raise it; `lines()` shows them all."""
        problems = [problem for error in errors for problem in error.problems]
        if not problems:
            raise ValueError("ConfigError.gather needs at least one error")
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        return cls(
            first.field, first.message, source=first.source, line=first.line, problems=problems
        )

    def located(self, *, source: str | None = None, line: int | None = None) -> ConfigError:
        """This (single) problem with the file and line it is in filled in where not yet known."""
        return ConfigError(
            self.field,
            self.message,
            source=self.source if self.source is not None else source,
            line=self.line if self.line is not None else line,
        )

    def lines(self) -> list[str]:
        """What to show the operator, one line per problem: this one error's line here; an
        error that gathers every mistake of a file gives one line for each."""
        return [_one_line(problem._where() + problem.message) for problem in self.problems]


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


class StepTooLarge(NotifierError):
    """A workflow step's value, encoded as stored, is larger than ``runner.max_step_bytes``: it is
    not recorded (a step is a unit of work to replay, not a place for a whole result), so the step
    fails with this message, which names the size and the setting that limits it."""

    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            f"the step's value is {size_bytes:,} bytes; the limit is {limit_bytes:,} "
            "(runner.max_step_bytes)"
        )


class StepNotStorable(NotifierError):
    """A workflow step's value is not JSON (a datetime, an object, a circular list): a replay
    could not hand it back as the step returned it, so it is refused rather than turned into
    text."""


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
