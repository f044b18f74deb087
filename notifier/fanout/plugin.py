"""The API a notifier plugin is written against: the base class, what it is handed, what it returns.

A plugin is one class in one file (Apprise's habit: one file per service, metadata on the class). The
class says its `name`, the `events` it accepts and its `Options` schema (a frozen pydantic model that
forbids unknown keys); the fanout validates each `notifiers[i]` entry of config.yaml against that
metadata before anything is sent, so a typo is a `ConfigError` naming the field, not a failed send an
hour later. Plugin files are found by `notifier.fanout.discovery`; authors import these names from
`notifier.plugins`.

A plugin's `send` returns a `SendOutcome` or raises `TransientSendError` (the outbox retries it later)
or `PermanentSendError` (retrying cannot help). Anything else it raises is treated as transient and
logged as a plugin bug. A plugin with several targets reports one `TargetResult` per target so a retry
can skip the targets that already have the notice (`RenderedNotice.settled_targets`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from ..config import DEFAULT_API_BASE
from ..discord.text import inert
from ..errors import NotifierError
from ..events import Event, Notice
from .templates import DEFAULT_TEMPLATES, TRUSTED_FIELDS, MessageTemplate

if TYPE_CHECKING:
    import aiohttp

    from ..config import Settings

__all__ = [
    "PermanentSendError",
    "Plugin",
    "PluginClass",
    "PluginContext",
    "RenderedNotice",
    "SendDM",
    "SendError",
    "SendOutcome",
    "SendStatus",
    "TargetResult",
    "TargetStatus",
    "TransientSendError",
]


# ---------------------------------------------------------------------------------------------
# What a plugin is handed


class SendDM(Protocol):
    """Sends a direct message through the running bot: (user_id, content, embed dict or None).

    Raises on failure. An exception with `status` 4xx (not 408/429) or a Discord `code` 50007
    (cannot DM this user) or 50278 (no shared server) is permanent; anything else is transient.
    An implementation may also accept a keyword `nonce: str | None = None`; it is then given a
    nonce stable across retries of the same notice (send it with `enforce_nonce: true`).
    """

    def __call__(
        self, user_id: int, content: str, embed: dict[str, Any] | None, /
    ) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class PluginContext:
    """The shared, process-wide resources a plugin may use; built once by the bot and passed in.

    `executor` is only for blocking work (Apprise's synchronous `send()`): native senders use `http`
    so throughput is not capped by a thread pool. The bot owns these resources and closes them after
    `Fanout.close()`.
    """

    http: aiohttp.ClientSession
    executor: ThreadPoolExecutor
    send_dm: SendDM | None = None
    discord_api_base: str = DEFAULT_API_BASE

    @classmethod
    def for_settings(
        cls, settings: Settings, *, http: aiohttp.ClientSession, send_dm: SendDM | None = None
    ) -> PluginContext:
        """A context sized by `fanout.executor_workers` and pointed at `discord.api_base`.

        The caller owns the executor: `context.executor.shutdown(wait=False, cancel_futures=True)`
        after `Fanout.close()`.
        """
        executor = ThreadPoolExecutor(
            max_workers=settings.fanout.executor_workers, thread_name_prefix="notifier-send"
        )
        return cls(
            http=http,
            executor=executor,
            send_dm=send_dm,
            discord_api_base=settings.discord.api_base.rstrip("/"),
        )


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    """The message one notifier sends for one notice, plus what a retry needs to stay idempotent.

    `idempotency_key` is the outbox row's key: send it to sinks that dedupe (an `Idempotency-Key`
    header, a Discord nonce). `settled_targets` holds the `TargetResult.target_id`s that an earlier
    attempt already delivered (or that failed for good): a multi-target plugin skips them. `timeout_s`
    is this attempt's budget; the fanout cancels `send` after it.
    """

    title: str
    body: str
    idempotency_key: str = ""
    attempt: int = 1
    timeout_s: float = 15.0
    settled_targets: frozenset[str] = frozenset()

    @classmethod
    def render(
        cls, template: MessageTemplate, fields: Mapping[str, str], **extra: Any
    ) -> RenderedNotice:
        """Fill the template. Field names were checked at load time, so this cannot miss a key.

        Every field but the bot's own mention of the requester (`TRUSTED_FIELDS`) is outside text
        (a page's title in `summary`, a user's name and URL, a site's error) and is made `inert`
        before it goes in: it can ping nobody and hide no link in any sink, Apprise's Discord
        plugin included, whose own `allowed_mentions` is broken. The template's own words are the
        operator's and stay as written.
        """
        safe = {
            name: value if name in TRUSTED_FIELDS else inert(value)
            for name, value in fields.items()
        }
        return cls(
            title=template.title.format_map(safe),
            body=template.body.format_map(safe),
            **extra,
        )


# ---------------------------------------------------------------------------------------------
# What a plugin hands back


class TargetStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class TargetResult:
    """The outcome for one target (one URL, one DM recipient) of one attempt.

    `target` is a display form safe to log and store (Apprise's privacy URL, `dm:<user id>`);
    `target_id` is stable across attempts and process restarts (a hash of the configured target) so a
    retry can skip targets already served. `errors` must already be redacted-safe; the fanout redacts
    them again before storing.
    """

    target: str
    target_id: str
    status: TargetStatus
    attempts: int = 1
    errors: tuple[str, ...] = ()
    permanent: bool = False
    retry_after_s: float | None = None

    @property
    def settled(self) -> bool:
        """Nothing more to do for this target: delivered, or failed in a way retries cannot fix."""
        return self.status in (TargetStatus.SENT, TargetStatus.SKIPPED) or (
            self.status is TargetStatus.FAILED and self.permanent
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "status": self.status.value,
            "attempts": self.attempts,
            "errors": list(self.errors),
            "permanent": self.permanent,
        }


class SendStatus(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """A successful `send`: delivered (`SENT`) or deliberately not sent (`SKIPPED`, with why)."""

    status: SendStatus = SendStatus.SENT
    detail: str = ""
    targets: tuple[TargetResult, ...] = ()

    @classmethod
    def sent(cls, targets: Iterable[TargetResult] = (), detail: str = "") -> SendOutcome:
        return cls(SendStatus.SENT, detail, tuple(targets))

    @classmethod
    def skipped(cls, reason: str) -> SendOutcome:
        return cls(SendStatus.SKIPPED, reason)


class SendError(NotifierError):
    """A send that did not deliver. Raise one of the two children, never this one."""

    def __init__(
        self,
        message: str,
        *,
        targets: Sequence[TargetResult] = (),
        retry_after_s: float | None = None,
    ) -> None:
        self.message = message
        self.targets = tuple(targets)
        self.retry_after_s = retry_after_s
        super().__init__(message)


class TransientSendError(SendError):
    """Worth retrying later: connection refused, 5xx, 429 (`retry_after_s`), a timeout."""


class PermanentSendError(SendError):
    """Retrying cannot help: 4xx other than 408/429, unknown webhook, the user blocks DMs."""


# ---------------------------------------------------------------------------------------------
# The plugin base class


class Plugin[OptionsT: BaseModel]:
    """Base class of every notifier plugin. Subclass it once per file and fill in the metadata.

    ```python
    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        url: str

    class MyPlugin(Plugin[Options]):
        name = "my_plugin"
        events = frozenset(Event)
        Options = Options

        async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
            ...
            return SendOutcome.sent()
    ```

    `__init__` runs at load time with validated options: raise `ValueError` (or a `ConfigError`
    whose field is relative to `options`) there for problems pydantic cannot see. `send` must not
    block the event loop: blocking libraries go through `context.executor`.
    """

    name: ClassVar[str]
    events: ClassVar[frozenset[Event]]
    Options: ClassVar[type[BaseModel]]
    # Title/body per event when the config entry does not give its own.
    templates: ClassVar[Mapping[Event, MessageTemplate]] = DEFAULT_TEMPLATES
    # Template fields this plugin adds to the notice's own (see `template_fields`).
    extra_fields: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: OptionsT, context: PluginContext) -> None:
        self.options = options
        self.context = context

    def secrets(self) -> Iterable[str]:
        """Secrets this instance knows beyond the config entry (e.g. URLs read from an Apprise
        config file), added to the redactor at load time."""
        return ()

    def template_fields(self, notice: Notice) -> dict[str, str]:
        """The fields a template may use; extend with `extra_fields` by overriding this."""
        return notice.template_fields()

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        """Deliver `message`; return an outcome or raise Transient/PermanentSendError."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what `__init__` acquired. The shared context is not the plugin's to close."""


type PluginClass = type[Plugin[Any]]
