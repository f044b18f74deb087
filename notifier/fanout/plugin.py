"""Notifier plugins: the base class, what a plugin is handed, what it hands back, and discovery.

A plugin is one class in one file (Apprise's habit: one file per service, metadata on the class). The
class says its `name`, the `events` it accepts and its `Options` schema (a frozen pydantic model that
forbids unknown keys); the fanout validates each `notifiers[i]` entry of config.yaml against that
metadata before anything is sent, so a typo is a `ConfigError` naming the field, not a failed send an
hour later.

Plugins come from two places, both read by `discover_plugins`:

- every `*.py` file (not starting with `_`) in the project's built-in `plugins/` folder and in each of
  `fanout.plugin_dirs`, imported by file path under a prefixed module name so two folders may both
  hold an `email.py`;
- the `notifier.plugins` entry-point group, so a plugin can ship as its own installed distribution.

A file that cannot be imported, holds no plugin class (or more than one), or declares bad metadata is
reported with the file's path; by default the bot starts without it, with `fanout.strict: true`
discovery raises `PluginError` instead.

A plugin's `send` returns a `SendOutcome` or raises `TransientSendError` (the outbox retries it later)
or `PermanentSendError` (retrying cannot help). Anything else it raises is treated as transient and
logged as a plugin bug. A plugin with several targets reports one `TargetResult` per target so a retry
can skip the targets that already have the notice (`RenderedNotice.settled_targets`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import re
import string
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from loguru import logger
from pydantic import BaseModel

from .config import DEFAULT_API_BASE
from .errors import NotifierError, PluginError
from .events import Event, Notice
from .logs import redactor

if TYPE_CHECKING:
    import aiohttp

    from .config import Settings

__all__ = [
    "BUILTIN_PLUGIN_DIR",
    "DEFAULT_TEMPLATES",
    "ENTRY_POINT_GROUP",
    "MessageTemplate",
    "PermanentSendError",
    "Plugin",
    "PluginClass",
    "PluginContext",
    "PluginLoadError",
    "PluginRegistry",
    "RenderedNotice",
    "SendDM",
    "SendError",
    "SendOutcome",
    "SendStatus",
    "TargetResult",
    "TargetStatus",
    "TemplateFieldError",
    "TransientSendError",
    "discover_plugins",
    "load_plugin_file",
    "notice_field_names",
    "template_field_names",
    "validate_plugin_class",
]

ENTRY_POINT_GROUP = "notifier.plugins"

# The project's own top-level `plugins/` folder (email, discord_webhook, apprise, dm, ...). Always
# searched first, so an operator's `plugin_dirs` adds plugins without hiding the built-in ones.
BUILTIN_PLUGIN_DIR = Path(__file__).resolve().parent.parent / "plugins"

_PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
class MessageTemplate:
    """A title and body with `{field}` placeholders, filled with `str.format_map`."""

    title: str
    body: str


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
        """Fill the template. Field names were checked at load time, so this cannot miss a key."""
        return cls(
            title=template.title.format_map(fields),
            body=template.body.format_map(fields),
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


class TemplateFieldError(ValueError):
    """A template names a field no notice has, or is not a valid format string."""


_NOTICE_FIELDS: frozenset[str] = frozenset(
    Notice(event=Event.STARTED, workflow_id="", user_id=0, user_name="", command="")
    .template_fields()
    .keys()
)


def notice_field_names() -> frozenset[str]:
    """Every field a template may name for any notice (`Notice.template_fields()` keys)."""
    return _NOTICE_FIELDS


def template_field_names(text: str) -> set[str]:
    """The field names `text` uses. Raises TemplateFieldError on bad syntax or on attribute and
    index access (`{user.__class__}`, `{options[0]}`), which a config file has no business doing."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateFieldError(f"not a valid template ({exc})") from None
    for _, field_name, spec, _ in parsed:
        if field_name is None:
            continue
        if field_name == "" or not field_name.isidentifier():
            raise TemplateFieldError(
                f"template fields must be plain names like {{workflow_id}}, got {{{field_name}}}"
            )
        if spec and ("{" in spec):
            raise TemplateFieldError(f"nested fields in a format spec are not allowed ({spec!r})")
        names.add(field_name)
    return names


_T = MessageTemplate
DEFAULT_TEMPLATES: Mapping[Event, MessageTemplate] = {
    Event.STARTED: _T("Started: {command}", "{user} started {command} (workflow {workflow_id})."),
    Event.PROGRESS: _T(
        "Progress: {command} {progress}", "{command} for {user}: {progress} {stage}"
    ),
    Event.HANDOFF: _T(
        "Handed off: {command}",
        "{command} for {user} outlived the interaction window; its result will be delivered "
        "through {rung} (workflow {workflow_id}).",
    ),
    Event.SESSION_LOST: _T(
        "Discord session lost: {command}",
        "The Discord session of {command} for {user} was lost. The result is kept; retrieve it "
        "with {retrieval_command}.",
    ),
    Event.COMPLETED: _T(
        "Completed: {command}", "{command} for {user} completed in {duration}. {summary}"
    ),
    Event.FAILED: _T("Failed: {command}", "{command} for {user} failed: {error}"),
    Event.PERSISTED: _T(
        "Result saved: {command}",
        "The result of {command} for {user} is stored; retrieve it with {retrieval_command}.",
    ),
    Event.INTERRUPTED: _T(
        "Interrupted: {command}",
        "{command} for {user} was interrupted ({error}). Retrieve what was saved with "
        "{retrieval_command}.",
    ),
    Event.STORAGE_ERROR: _T(
        "Storage error: {command}",
        "The result of {command} for {user} (workflow {workflow_id}) could not be stored: {error}",
    ),
}


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


# ---------------------------------------------------------------------------------------------
# Discovery


@dataclass(frozen=True, slots=True)
class PluginLoadError:
    """Why one plugin source (a file or an entry point) was not loaded."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True, slots=True)
class PluginRegistry:
    """The plugins found by one discovery pass, by name, and the sources that failed."""

    plugins: Mapping[str, PluginClass] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    errors: tuple[PluginLoadError, ...] = ()

    def get(self, name: str) -> PluginClass | None:
        return self.plugins.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.plugins)


def validate_plugin_class(cls: object, source: str) -> PluginClass:
    """Check a candidate class's metadata; raise PluginError naming `source` if it is wrong."""
    if not (isinstance(cls, type) and issubclass(cls, Plugin)) or cls is Plugin:
        raise PluginError(source, f"{cls!r} is not a subclass of notifier.plugins.Plugin")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _PLUGIN_NAME.match(name):
        raise PluginError(
            source,
            f"{cls.__name__}.name must be lower-case letters, digits and _ (got {name!r})",
        )
    events = getattr(cls, "events", None)
    if (
        not isinstance(events, frozenset)
        or not events
        or not all(isinstance(e, Event) for e in events)
    ):
        raise PluginError(
            source, f"{cls.__name__}.events must be a non-empty frozenset of Event (got {events!r})"
        )
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise PluginError(source, f"{cls.__name__}.Options must be a pydantic BaseModel subclass")
    config = options.model_config
    if config.get("extra") != "forbid" or not config.get("frozen"):
        raise PluginError(
            source,
            f"{cls.__name__}.Options must set model_config = ConfigDict(extra='forbid', "
            "frozen=True) so a typo in config.yaml is an error, not a silently ignored key",
        )
    if not inspect.iscoroutinefunction(cls.send) or cls.send is Plugin.send:
        raise PluginError(source, f"{cls.__name__}.send must be an `async def` override")
    if not inspect.iscoroutinefunction(cls.close):
        raise PluginError(source, f"{cls.__name__}.close must be an `async def`")
    for event in events:
        if event not in cls.templates:
            raise PluginError(source, f"{cls.__name__}.templates has no default for {event.value}")
    allowed = _NOTICE_FIELDS | cls.extra_fields
    for event, template in cls.templates.items():
        for part, text in (("title", template.title), ("body", template.body)):
            try:
                unknown = template_field_names(text) - allowed
            except TemplateFieldError as exc:
                raise PluginError(source, f"default template {event.value}.{part}: {exc}") from None
            if unknown:
                raise PluginError(
                    source,
                    f"default template {event.value}.{part} names unknown field(s) "
                    f"{', '.join(sorted(unknown))}",
                )
    return cls


def _plugin_classes(module: ModuleType) -> list[type[Any]]:
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Plugin)
        and obj is not Plugin
        and obj.__module__ == module.__name__
    ]


def _module_name(path: Path) -> str:
    # Prefixed and salted with the folder so `a/plugins/email.py` and `b/plugins/email.py` coexist
    # and neither shadows a real top-level module called `email`.
    digest = hashlib.sha256(str(path.parent).encode()).hexdigest()[:10]
    return f"_notifier_plugin_{digest}_{path.stem}"


def _describe(exc: BaseException) -> str:
    """One line naming the exception and, for errors inside the plugin file, where it happened."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return redactor.redact(f"{type(exc).__name__}: {exc}{where}")


def load_plugin_file(path: Path) -> PluginClass:
    """Import one plugin file by path and return its one plugin class, or raise PluginError."""
    source = str(path)
    module_name = _module_name(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(source, "cannot be imported (not a Python source file?)")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: pydantic and dataclasses resolve annotations through
    # sys.modules[cls.__module__].
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise PluginError(source, f"failed to import: {_describe(exc)}") from None
    classes = _plugin_classes(module)
    if not classes:
        raise PluginError(source, "defines no plugin class (a subclass of notifier.plugins.Plugin)")
    if len(classes) > 1:
        names = ", ".join(sorted(c.__name__ for c in classes))
        raise PluginError(source, f"defines {len(classes)} plugin classes ({names}); one per file")
    return validate_plugin_class(classes[0], source)


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> PluginClass:
    source = f"entry point {ep.name!r} ({ep.value}) in group {ENTRY_POINT_GROUP!r}"
    try:
        loaded = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import failure becomes one reported error
        raise PluginError(source, f"failed to import: {_describe(exc)}") from None
    if isinstance(loaded, ModuleType):
        classes = _plugin_classes(loaded)
        if len(classes) != 1:
            raise PluginError(source, f"module defines {len(classes)} plugin classes; expected 1")
        loaded = classes[0]
    return validate_plugin_class(loaded, source)


def _plugin_files(plugin_dirs: Iterable[Path], include_builtin: bool) -> list[Path]:
    dirs: list[Path] = [BUILTIN_PLUGIN_DIR] if include_builtin else []
    dirs.extend(plugin_dirs)
    seen: set[Path] = set()
    files: list[Path] = []
    for folder in dirs:
        resolved = folder.resolve()
        if resolved in seen or not resolved.is_dir():
            continue
        seen.add(resolved)
        files.extend(p for p in sorted(resolved.glob("*.py")) if not p.name.startswith("_"))
    return files


def discover_plugins(
    plugin_dirs: Iterable[Path] = (),
    *,
    strict: bool = False,
    include_builtin: bool = True,
    entry_points: bool = True,
) -> PluginRegistry:
    """Load every plugin from the built-in folder, `plugin_dirs` and the entry-point group.

    A source that fails is logged (naming the file or entry point) and left out; with `strict`
    the first failure raises PluginError after all sources were tried, so the message can list
    every broken one. Two plugins with the same `name`: the first found wins (built-in folder,
    then `plugin_dirs` in order, then entry points) and the second is an error.
    """
    plugins: dict[str, PluginClass] = {}
    sources: dict[str, str] = {}
    errors: list[PluginLoadError] = []

    def add(loader: Callable[[], PluginClass], source: str) -> None:
        try:
            cls: PluginClass = loader()
        except PluginError as exc:
            message = str(exc).removeprefix(f"plugin {exc.plugin!r}: ")
            errors.append(PluginLoadError(exc.plugin, message))
            return
        if cls.name in plugins:
            errors.append(
                PluginLoadError(
                    source,
                    f"plugin name {cls.name!r} is already taken by {sources[cls.name]}",
                )
            )
            return
        plugins[cls.name] = cls
        sources[cls.name] = source

    for path in _plugin_files(plugin_dirs, include_builtin):
        add(functools.partial(load_plugin_file, path), str(path))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            add(functools.partial(_load_entry_point, ep), f"entry point {ep.name!r} ({ep.value})")

    for error in errors:
        logger.error(redactor.redact(f"notifier plugin not loaded: {error}"))
    if strict and errors:
        first = errors[0]
        more = (
            f" (and {len(errors) - 1} more: {'; '.join(map(str, errors[1:]))})"
            if errors[1:]
            else ""
        )
        raise PluginError(first.source, f"{first.message}{more}")
    return PluginRegistry(plugins=plugins, sources=sources, errors=tuple(errors))
