"""The notifier fanout: one notice in, one durable outbox row per matching notifier, sent concurrently.

`emit` only decides who gets a notice and writes the rows (see `notifier.fanout.outbox` for why that
makes notices survive crashes); sending happens in one background task per row, each bounded by
`fanout.timeout`, so a slow or broken notifier never delays the workflow, the Discord delivery or
the other notifiers. Failed attempts come back through the retry loop at their `next_attempt_at`.

Decisions worth knowing:

- What counts as transient (retried with backoff up to `max_attempts`): connection errors, timeouts,
  HTTP 408/425/429/5xx, an Apprise FAILURE, a DM error other than a 4xx or "cannot DM this user",
  and any exception a plugin raises that is not a `PermanentSendError` (logged as a plugin bug).
- A timeout means "outcome unknown"; it is retried (at-least-once) with the same idempotency key.
  An executor (Apprise) send that is still running is not repeated: the retry waits for it.
- When the outbox cannot be written (a full disk), `emit` does not drop the notices: they are held
  in memory, the retry loop writes them as soon as it can (then sends them as usual), and `close`
  gives them a last try. Only a process that dies while they are held loses them.
- `progress` notices go only to notifiers that list `progress` in `on:`, and at most one per
  (notifier, workflow) per `progress_interval_s` (30 s): a newer one replaces a held one (latest
  wins) and is queued when the interval ends. Held progress lives in memory only (it is superseded
  within seconds anyway) and is dropped when the workflow completes, fails or is interrupted.
- Start and reload check notifier entries the same way (`check_notifier`, also used by `notifier
  config check` and `notifiers test`) and follow the same rule: with `fanout.strict` any broken
  entry refuses the whole file (every problem in one ConfigError; on reload the running set keeps
  going), without it the broken entries are left out loudly (each problem logged, and one
  WARNING line, `NotifierReport.line`: "2 of 3 notifiers started; left out: ..."). `reload`
  builds the whole new set before touching the running one. Pending rows of notifiers that the
  new config removes, disables or leaves out are marked failed with a message saying so (visible
  in `outbox list --status failed`; `outbox retry` requeues them once the notifier is back); rows
  of a notifier that only changed are sent with its new settings.
- Metrics: NOTIFICATIONS_SENT counts each attempt once, as `sent`, `skipped`, `retried`
  (transient failure, rescheduled), `timeout` (timed out, rescheduled) or `failed` (the row is now
  dead); NOTIFICATION_LATENCY is queue-to-sent time; OUTBOX_PENDING is kept by the outbox.
- Every log line and stored error passes through `redactor.redact`; configured secrets (and the
  secrets of services read from Apprise config files) are added to the redactor at load time.
"""

from __future__ import annotations

import asyncio
import difflib
import random
import re
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from loguru import logger
from pydantic import BaseModel, ValidationError

from ..config import NotifierEntry, Settings, document_of, plain_errors, secret_values
from ..errors import ConfigError, PluginError, StoreError
from ..events import Event, Notice
from ..logs import redactor
from ..metrics import NOTIFICATION_LATENCY, NOTIFICATIONS_SENT
from .discovery import PluginLoadError, PluginRegistry, discover_plugins
from .outbox import NewNotice, Outbox, OutboxRow, backoff_delay_s, open_outbox, outbox_path
from .plugin import (
    PermanentSendError,
    Plugin,
    PluginClass,
    PluginContext,
    RenderedNotice,
    SendError,
    SendOutcome,
    SendStatus,
    TargetResult,
    TargetStatus,
)
from .templates import (
    MessageTemplate,
    TemplateFieldError,
    notice_field_names,
    template_field_names,
)
from .transports.common import mask_url

__all__ = [
    "CLOSE_DRAIN_S",
    "POLL_INTERVAL_S",
    "PROGRESS_INTERVAL_S",
    "Fanout",
    "LeftOut",
    "Notifier",
    "NotifierReport",
    "build_notifiers",
    "check_notifier",
    "load_notifiers",
]

# At most one progress notice per (notifier, workflow) in this many seconds.
PROGRESS_INTERVAL_S: Final = 30.0
# The retry loop looks at the outbox at least this often (to see rows requeued by the CLI).
POLL_INTERVAL_S: Final = 5.0
# `close()` waits this long for in-flight sends before cancelling them (they stay pending).
CLOSE_DRAIN_S: Final = 5.0
# Sends in progress at once across all notifiers (a restart with a big backlog must not open
# thousands of sockets at once).
MAX_CONCURRENT_SENDS: Final = 256
# Due rows picked up per pass of the retry loop.
RETRY_BATCH: Final = 200
_TERMINAL_EVENTS: Final = frozenset({Event.COMPLETED, Event.FAILED, Event.INTERRUPTED})
_NOT_CONFIGURED: Final = (
    "notifier {notifier!r} is not configured any more (removed or disabled by a reload, or its "
    "plugin failed to load); restore it, then run `outbox retry {id}`"
)


def _log(level: str, text: str) -> None:
    """Every fanout log line goes through here: redacted, never formatted again by loguru."""
    logger.opt(depth=1).log(level, redactor.redact(text))


def _describe(exc: BaseException) -> str:
    """Exception type, message and innermost frame, without a traceback (whose variable dump
    could hold a URL with a password in it)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return redactor.redact(f"{type(exc).__name__}: {exc}{where}")


# ---------------------------------------------------------------------------------------------
# Building notifiers from config


@dataclass(frozen=True, slots=True)
class Notifier:
    """One configured notifier: its config entry, its loaded plugin and its checked templates."""

    index: int
    entry: NotifierEntry
    plugin: Plugin[Any]
    templates: Mapping[Event, MessageTemplate]

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def plugin_name(self) -> str:
        return self.entry.plugin

    def matches(self, notice: Notice) -> bool:
        """Its `on:` holds the event and the notice passes its filter (empty filter lists pass)."""
        if notice.event not in self.entry.on:
            return False
        rule = self.entry.filter
        if rule.guild_ids and notice.guild_id not in rule.guild_ids:
            return False
        if rule.commands and notice.command.lstrip("/") not in {
            c.lstrip("/") for c in rule.commands
        }:
            return False
        return not (rule.user_ids and notice.user_id not in rule.user_ids)

    def render(
        self,
        notice: Notice,
        *,
        idempotency_key: str,
        attempt: int,
        timeout_s: float,
        settled_targets: frozenset[str],
    ) -> RenderedNotice:
        return RenderedNotice.render(
            self.templates[notice.event],
            self.plugin.template_fields(notice),
            idempotency_key=idempotency_key,
            attempt=attempt,
            timeout_s=timeout_s,
            settled_targets=settled_targets,
        )

    async def send_once(
        self, notice: Notice, *, idempotency_key: str, timeout_s: float
    ) -> SendOutcome:
        """Render `notice` as a first attempt and send it now, outside the outbox (a test
        notice: ``notifier notifiers test``, ``/notify test``). Raises what the plugin raises
        (`SendError`), or TimeoutError after `timeout_s`."""
        message = self.render(
            notice,
            idempotency_key=idempotency_key,
            attempt=1,
            timeout_s=timeout_s,
            settled_targets=frozenset(),
        )
        return await asyncio.wait_for(self.plugin.send(notice, message), timeout_s)


# ---------------------------------------------------------------------------------------------
# Users' own channels (see `notifier.fanout.user_routes`)

USER_NOTIFIER_PREFIX: Final = "user:"


def is_user_notifier(name: str) -> bool:
    return name.startswith(USER_NOTIFIER_PREFIX)


class UserRoutes(Protocol):
    def notifiers(self) -> Mapping[str, Notifier]:
        """The users' channel notifiers by name (``user:email`` ...), fixed for the process."""

    async def route(self, notice: Notice) -> Sequence[str]:
        """The names of the user channels `notice` goes to (none when the user chose nothing)."""

    def sent(self, notifier: str, outcome: str) -> None:
        """Count an attempt's outcome for ``notifier_user_notifications_total{via,outcome}``."""


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A notifier entry that was not started, and why (every problem of it, with lines)."""

    name: str
    error: ConfigError

    @property
    def reason(self) -> str:
        """Its first problem in a few words: the key inside the entry (not for `plugin` and `on`,
        whose messages name the plugin) and what is wrong; the full path and the line are in
        `error.lines()`."""
        first, more = self.error.problems[0], len(self.error.problems) - 1
        key = re.sub(r"^notifiers\[\d+\]\.?", "", first.field)
        text = first.message if key in ("", "plugin", "on") else f"{key}: {first.message}"
        return text + (f"; and {more} more problem{'s' if more > 1 else ''}" if more else "")


@dataclass(frozen=True, slots=True)
class NotifierReport:
    """What a start or a reload made of the enabled `notifiers:` entries: the ones running and
    the ones left out (never silently: `line` says which and why)."""

    started: tuple[str, ...]
    left_out: tuple[LeftOut, ...] = ()

    @property
    def line(self) -> str:
        """``2 of 3 notifiers started; left out: phone (unknown plugin 'ntfy_topik', ...)``, the
        same words at start and on reload."""
        total = len(self.started) + len(self.left_out)
        head = f"{len(self.started)} of {total} notifiers started"
        if not self.left_out:
            return head + (f": {', '.join(self.started)}" if self.started else "")
        return f"{head}; left out: " + ", ".join(
            f"{item.name} ({item.reason})" for item in self.left_out
        )


def _show(value: object) -> str:
    """A bad option value for an error message: URLs masked, long values cut, secrets redacted."""
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return redactor.redact(text)


def _check_options(
    path: str, cls: PluginClass, options: Mapping[str, Any], originals: Mapping[str, str]
) -> tuple[BaseModel | None, list[ConfigError]]:
    """The entry's options validated by the plugin's own `Options` model; every problem, in the
    same plain words as the rest of the file."""
    try:
        return cls.Options.model_validate(dict(options)), []
    except ValidationError as exc:
        problems = plain_errors(
            exc,
            data=dict(options),
            model=cls.Options,
            prefix=f"{path}.options",
            show=_show,
            originals=originals,
            unknown_key=f"unknown option for plugin {cls.name!r}",
        )
        return None, [ConfigError(p.field, redactor.redact(p.message)) for p in problems]


def _check_templates(
    path: str, entry: NotifierEntry, cls: PluginClass, events: Iterable[Event]
) -> tuple[dict[Event, MessageTemplate], list[ConfigError]]:
    """Each event's title and body (the entry's, else the plugin's default), checked now so an
    unknown `{field}` is a config error at load time, not a KeyError at send time. Events the
    plugin never receives are reported by the caller (`on`) or here (`templates`)."""
    allowed = notice_field_names() | cls.extra_fields
    trial = dict.fromkeys(allowed, "")
    compiled: dict[Event, MessageTemplate] = {}
    problems: list[ConfigError] = []
    for event in dict.fromkeys(events):
        if event not in cls.events:
            if event not in entry.on:
                problems.append(
                    ConfigError(
                        f"{path}.templates.{event.value}",
                        f"plugin {cls.name!r} never receives {event.value!r}",
                    )
                )
            continue
        default = cls.templates[event]
        override = entry.templates.get(event)
        title = override.title if override and override.title is not None else default.title
        body = override.body if override and override.body is not None else default.body
        good = True
        for part, text in (("title", title), ("body", body)):
            where = f"{path}.templates.{event.value}.{part}"
            try:
                unknown = template_field_names(text) - allowed
                if not unknown:
                    text.format_map(trial)  # catches format specs a string cannot take
            except (TemplateFieldError, ValueError) as exc:
                problems.append(ConfigError(where, f"invalid template: {exc}"))
                good = False
                continue
            if unknown:
                names = ", ".join(f"{{{n}}}" for n in sorted(unknown))
                known = ", ".join(sorted(allowed))
                problems.append(
                    ConfigError(where, f"unknown template field {names} (known: {known})")
                )
                good = False
        if good:
            compiled[event] = MessageTemplate(title=title, body=body)
    return compiled, problems


def _unknown_plugin(name: str, registry: PluginRegistry) -> str:
    """Why no plugin is called `name`: its file failed to load, or a close name exists, or what
    the available ones are."""
    for failure in registry.errors:
        if Path(failure.source).stem == name:
            return f"plugin {name!r} did not load: {failure}"
    close = difflib.get_close_matches(name, registry.names, n=1)
    if close:
        return f"unknown plugin {name!r}, did you mean {close[0]!r}?"
    return f"unknown plugin {name!r} (available: {', '.join(registry.names) or 'none'})"


def check_notifier(
    index: int,
    entry: NotifierEntry,
    registry: PluginRegistry,
    context: PluginContext,
    *,
    originals: Mapping[str, str] | None = None,
    events: Iterable[Event] = (),
) -> tuple[Notifier | None, list[ConfigError]]:
    """The one check every notifier entry goes through, at start, on reload, by `config check`
    and `notifiers test`: its plugin exists, accepts the entry's events, its templates name
    known fields, its options pass the plugin's own validation (the `Options` model, then the
    plugin's `__init__`). Gathers every problem; returns the loaded notifier only if there is
    none. `events`: more events to get templates for (a test notice of an event not in `on:`).
    """
    path = f"notifiers[{index}]"
    cls = registry.get(entry.plugin)
    if cls is None:
        return None, [ConfigError(f"{path}.plugin", _unknown_plugin(entry.plugin, registry))]
    problems: list[ConfigError] = []
    refused = [e.value for e in entry.on if e not in cls.events]
    if refused:
        accepts = ", ".join(sorted(e.value for e in cls.events))
        problems.append(
            ConfigError(
                f"{path}.on",
                f"plugin {cls.name!r} does not accept {', '.join(refused)} (accepts: {accepts})",
            )
        )
    templates, template_problems = _check_templates(
        path, entry, cls, [*entry.on, *entry.templates, *events]
    )
    problems += template_problems
    options, option_problems = _check_options(path, cls, entry.options, originals or {})
    problems += option_problems
    if options is None or problems:
        return None, problems
    try:
        plugin = cls(options, context)
    except ConfigError as exc:
        where = f"{path}.options.{exc.field}" if exc.field else f"{path}.options"
        return None, [ConfigError(where, redactor.redact(exc.message))]
    except (ValueError, TypeError) as exc:
        return None, [ConfigError(f"{path}.options", redactor.redact(str(exc)))]
    except Exception as exc:  # noqa: BLE001 - a plugin's own bug becomes one config error
        return None, [
            ConfigError(f"{path}.plugin", f"plugin {cls.name!r} failed to start: {_describe(exc)}")
        ]
    redactor.add(plugin.secrets())
    return Notifier(index=index, entry=entry, plugin=plugin, templates=templates), []


async def _close_plugins(notifiers: Iterable[Notifier]) -> None:
    for notifier in notifiers:
        try:
            await notifier.plugin.close()
        except Exception as exc:  # noqa: BLE001 - closing one must not stop closing the others
            _log("WARNING", f"notifier {notifier.name!r}: close failed: {_describe(exc)}")


async def load_notifiers(
    settings: Settings, registry: PluginRegistry, context: PluginContext
) -> tuple[dict[str, Notifier], NotifierReport]:
    """Every enabled `notifiers[i]` entry through `check_notifier`; the ones that pass are
    loaded, the others are in the report with every problem (file and line when `settings` were
    read from a file). Disabled entries are not loaded and not counted."""
    redactor.add(secret_values(settings))
    document = document_of(settings)
    originals = document.originals if document is not None else {}
    built: dict[str, Notifier] = {}
    left_out: list[LeftOut] = []
    try:
        for index, entry in enumerate(settings.notifiers):
            if not entry.enabled:
                continue
            notifier, problems = check_notifier(
                index, entry, registry, context, originals=originals
            )
            if notifier is not None:
                built[entry.name] = notifier
                continue
            error = ConfigError.gather(problems)
            left_out.append(LeftOut(entry.name, document.locate(error) if document else error))
    except BaseException:
        await _close_plugins(built.values())
        raise
    return built, NotifierReport(tuple(built), tuple(left_out))


async def build_notifiers(
    settings: Settings,
    registry: PluginRegistry,
    context: PluginContext,
    *,
    strict: bool,
    skipped: list[ConfigError] | None = None,
) -> dict[str, Notifier]:
    """Every enabled `notifiers[i]` entry, validated and loaded (`load_notifiers`), by the rule a
    start and a reload both follow.

    `strict`: any invalid entry raises one ConfigError holding every problem of every entry
    (after closing what was already loaded). Not strict: each invalid entry is logged with its
    problems, appended to `skipped`, and left out, so one bad notifier does not keep the bot (and
    its other notifiers) from starting.
    """
    built, report = await _build(settings, registry, context, strict=strict)
    if skipped is not None:
        skipped.extend(item.error for item in report.left_out)
    return built


async def _build(
    settings: Settings, registry: PluginRegistry, context: PluginContext, *, strict: bool
) -> tuple[dict[str, Notifier], NotifierReport]:
    built, report = await load_notifiers(settings, registry, context)
    if report.left_out and strict:
        await _close_plugins(built.values())
        raise ConfigError.gather(item.error for item in report.left_out)
    for item in report.left_out:
        for line in item.error.lines():
            _log("ERROR", f"{line}; notifier {item.name!r} is left out")
    return built, report


def _discover(settings: Settings) -> PluginRegistry:
    """The plugins `settings` can use; a broken plugin file raises PluginError under strict."""
    return discover_plugins(settings.fanout.plugin_dirs, strict=settings.fanout.strict)


# ---------------------------------------------------------------------------------------------
# The fanout


@dataclass(slots=True)
class _ProgressSlot:
    last_queued_at: float  # monotonic
    held: Notice | None = None
    flush: asyncio.Task[None] | None = None


def _merge_targets(
    stored: Mapping[str, Mapping[str, Any]], results: Iterable[TargetResult]
) -> dict[str, dict[str, Any]]:
    merged = {k: dict(v) for k, v in stored.items()}
    for result in results:
        before = merged.get(result.target_id, {})
        item = result.to_json()
        item["attempts"] = int(before.get("attempts", 0)) + result.attempts
        item["settled"] = result.settled
        merged[result.target_id] = item
    return merged


class Fanout:
    """Fans each notice out to the configured notifiers through the durable outbox.

    Build it with `await Fanout.open(settings, context)`, feed it with `emit`, stop it with
    `close()`. Only one Fanout may send from a given outbox file at a time.
    """

    def __init__(
        self,
        settings: Settings,
        context: PluginContext,
        registry: PluginRegistry,
        notifiers: dict[str, Notifier],
        outbox: Outbox,
        *,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        poll_interval_s: float = POLL_INTERVAL_S,
        report: NotifierReport | None = None,
        users: UserRoutes | None = None,
    ) -> None:
        """Use `Fanout.open`; this only assembles parts that are already open."""
        self._users = users
        # The users' own channels (``user:email``...): fixed for the process, never reloaded.
        self._user_notifiers: Mapping[str, Notifier] = users.notifiers() if users else {}
        self._settings = settings
        self._context = context
        self._registry = registry
        self._notifiers = notifiers
        self._outbox = outbox
        self._progress_interval_s = progress_interval_s
        self._poll_interval_s = poll_interval_s
        self._report = report if report is not None else NotifierReport(tuple(notifiers))
        self._tasks: set[asyncio.Task[None]] = set()  # one per row being sent
        self._timers: set[asyncio.Task[None]] = set()  # held-progress flushes
        self._retiring: set[asyncio.Task[None]] = set()  # closing plugins replaced by reload
        self._inflight: set[int] = set()  # outbox ids being sent
        self._held: list[NewNotice] = []  # notices the outbox could not take yet, oldest first
        self._held_delay_s = settings.fanout.backoff_initial
        # workflow id -> notifier name -> slot: a finished workflow drops its slots in one step
        # (with 10,000 workflows running, a scan of every slot per finish was quadratic).
        self._progress: dict[str, dict[str, _ProgressSlot]] = {}
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_SENDS)
        self._worker: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self._closed = False

    # -- life cycle -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: Settings,
        context: PluginContext,
        *,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        poll_interval_s: float = POLL_INTERVAL_S,
        users: UserRoutes | None = None,
    ) -> Fanout:
        """Discover plugins, build the notifiers, open the outbox, send what a previous process
        left pending (all of it, now: a restart is a natural retry point) and start the retry loop.

        Raises PluginError (a broken plugin file, only with `fanout.strict`), ConfigError (every
        invalid notifier entry, only with `fanout.strict`; otherwise each is logged, left out and
        listed in `report`, and one WARNING line says which: `NotifierReport.line`) or StoreError
        (the outbox cannot be opened).
        """
        registry = await asyncio.to_thread(_discover, settings)
        notifiers, report = await _build(settings, registry, context, strict=settings.fanout.strict)
        try:
            outbox = await open_outbox(settings)
        except BaseException:
            await _close_plugins(notifiers.values())
            raise
        fanout = cls(
            settings,
            context,
            registry,
            notifiers,
            outbox,
            progress_interval_s=progress_interval_s,
            poll_interval_s=poll_interval_s,
            report=report,
            users=users,
        )
        try:
            await fanout._resume()
        except BaseException:
            await fanout.close(drain_timeout_s=0)
            raise
        fanout._worker = asyncio.create_task(fanout._retry_loop(), name="notifier-outbox-retry")
        _log(
            "INFO",
            f"notifier fanout started: {len(notifiers)} notifier(s) "
            f"({', '.join(notifiers) or 'none'}), outbox {outbox.path}",
        )
        if report.left_out:
            _log("WARNING", report.line)
        return fanout

    async def close(self, *, drain_timeout_s: float = CLOSE_DRAIN_S) -> None:
        """Stop taking notices, wait up to `drain_timeout_s` for sends in flight, cancel the rest
        (their rows stay pending and go out at the next start), close plugins and the outbox."""
        if self._closed:
            return
        self._closed = True
        for task in [self._worker, *self._timers]:
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in [self._worker, *self._timers] if t is not None), return_exceptions=True
        )
        self._progress.clear()
        if self._held:
            held = list(self._held)
            try:
                await self._outbox.enqueue(held, now_s=time.time())  # sent at the next start
                self._held.clear()
            except StoreError as exc:
                _log(
                    "CRITICAL",
                    f"{len(held)} notice(s) never reached the outbox and are lost with this "
                    f"process ({exc}): "
                    + ", ".join(f"{i.notice.event.value} of {i.notice.workflow_id}" for i in held),
                )
        await self.drain(drain_timeout_s)
        leftover = list(self._tasks)
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        await asyncio.gather(*list(self._retiring), return_exceptions=True)
        if leftover:
            _log(
                "WARNING",
                f"notifier fanout closed with {len(leftover)} send(s) unfinished; they stay "
                "pending in the outbox and are sent at the next start",
            )
        await _close_plugins(self._notifiers.values())
        await self._outbox.close()

    async def drain(self, timeout_s: float) -> None:
        """Wait until no send is in flight, or `timeout_s` passed (rows in backoff are not in
        flight: they are not waited for)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait(set(self._tasks), timeout=remaining)

    # -- what callers see -------------------------------------------------------------------

    @property
    def notifier_names(self) -> list[str]:
        return list(self._notifiers)

    @property
    def plugin_errors(self) -> tuple[PluginLoadError, ...]:
        """Plugin sources that failed to load (non-strict mode starts without them)."""
        return self._registry.errors

    @property
    def config_errors(self) -> tuple[ConfigError, ...]:
        """Notifier entries left out by the last start or reload (not strict), each naming its
        field path."""
        return tuple(item.error for item in self._report.left_out)

    @property
    def report(self) -> NotifierReport:
        """The notifiers the last start or reload started and the ones it left out."""
        return self._report

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def emit(self, notice: Notice) -> None:
        """Queue `notice` for every enabled notifier whose `on:` and filter match, and return as
        soon as the rows are durable. Sending happens in background tasks: this never waits on a
        sink and never raises for a plugin's problem. If the outbox cannot be written, the notices
        are held in memory and written (then sent) by the retry loop once it can be."""
        if self._closed:
            _log(
                "ERROR",
                f"notice {notice.event.value} of workflow {notice.workflow_id} arrived after the "
                "fanout was closed; it was not queued",
            )
            return
        notifiers = [n for n in self._notifiers.values() if n.matches(notice)]
        if self._users is not None and notice.event is not Event.PROGRESS:
            try:
                routed = await self._users.route(notice)
            except StoreError as exc:
                # The user's settings cannot be read: the operators' notices still go out.
                _log(
                    "ERROR",
                    f"users' own channels not consulted for {notice.event.value} of workflow "
                    f"{notice.workflow_id}: {exc}",
                )
                routed = []
            notifiers += [self._user_notifiers[name] for name in routed]
        if notice.event is Event.PROGRESS:
            notifiers = self._throttle_progress(notice, notifiers)
        elif notice.event in _TERMINAL_EVENTS:
            self._forget_progress(notice.workflow_id)
        if notifiers:
            await self._queue(notice, notifiers)

    async def reload(self, settings: Settings) -> NotifierReport:
        """Swap in the notifiers of `settings` by the rules of a start, and say what was started.

        With `fanout.strict` (the new file's), any invalid entry or broken plugin file raises
        ConfigError (every problem in it) and the running set stays as it was. Without it, the
        invalid entries are left out, loudly: each problem is logged, and the returned report's
        `line` (also logged) names them, in the words of the start. In-flight sends finish with
        the old plugin instances, which are closed after.

        `fanout.outbox_path` and the executor size need a restart; timeouts, attempts, backoff,
        plugin_dirs and notifiers take effect now."""
        if self._closed:
            raise RuntimeError("the fanout is closed")
        try:
            # Off the loop: a reload happens while the bot serves, and discovery reads and
            # imports the operators' plugin files.
            registry = await asyncio.to_thread(_discover, settings)
        except PluginError as exc:
            error = ConfigError("fanout.plugin_dirs", str(exc))
            document = document_of(settings)
            raise (document.locate(error) if document is not None else error) from None
        new, report = await _build(settings, registry, self._context, strict=settings.fanout.strict)
        self._report = report
        if outbox_path(settings).resolve() != self._outbox.path.resolve():
            _log("WARNING", "fanout.outbox_path changed; the new path is used after a restart")
        old, self._notifiers = self._notifiers, new
        self._settings, self._registry = settings, registry
        for workflow_id, slots in list(self._progress.items()):
            for name in [n for n in slots if n not in new]:
                self._drop_slot((name, workflow_id))
        failed = await self._outbox.fail_pending_except(
            [*new.keys(), *self._user_notifiers],
            error=_NOT_CONFIGURED,
            now_s=time.time(),
            exclude=set(self._inflight),
        )
        retire = asyncio.create_task(self._retire(old.values(), set(self._tasks)))
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        _log(
            "INFO",
            f"notifiers reloaded: {', '.join(new) or 'none'}"
            + (
                f"; {len(failed)} pending notice(s) of removed notifiers marked failed"
                if failed
                else ""
            ),
        )
        if report.left_out:
            _log("WARNING", report.line)
        self._wake.set()
        return report

    # -- queueing ---------------------------------------------------------------------------

    async def _queue(self, notice: Notice, notifiers: Sequence[Notifier]) -> None:
        items = [NewNotice(n.name, n.plugin_name, notice) for n in notifiers]
        try:
            rows = await self._outbox.enqueue(items, now_s=time.time())
        except StoreError as exc:
            self._held.extend(items)
            _log(
                "ERROR",
                f"outbox not written ({exc}): {notice.event.value} of workflow "
                f"{notice.workflow_id} for {', '.join(repr(i.notifier) for i in items)} held in "
                "memory; it is queued when the outbox can be written again",
            )
            return
        for row in rows:
            self._dispatch(row)

    async def _queue_held(self) -> None:
        """Write the held notices (oldest first) and send them; keep them if the outbox still
        refuses (the retry loop comes back, backing off up to its poll interval)."""
        held, self._held = self._held, []
        try:
            rows = await self._outbox.enqueue(held, now_s=time.time())
        except StoreError as exc:
            self._held = held + self._held
            self._held_delay_s = min(self._held_delay_s * 2, self._poll_interval_s)
            _log("WARNING", f"{len(self._held)} held notice(s) still not queued: {exc}")
            return
        self._held_delay_s = self._settings.fanout.backoff_initial
        _log("INFO", f"{len(held)} held notice(s) written to the outbox")
        for row in rows:
            self._dispatch(row)

    def _throttle_progress(self, notice: Notice, notifiers: Sequence[Notifier]) -> list[Notifier]:
        now = time.monotonic()
        send_now: list[Notifier] = []
        for notifier in notifiers:
            key = (notifier.name, notice.workflow_id)
            slot = self._slot(key)
            if slot is None or now - slot.last_queued_at >= self._progress_interval_s:
                if slot is not None:
                    self._drop_slot(key)
                self._progress.setdefault(notice.workflow_id, {})[notifier.name] = _ProgressSlot(
                    last_queued_at=now
                )
                send_now.append(notifier)
                continue
            slot.held = notice  # latest wins
            if slot.flush is None:
                delay_s = slot.last_queued_at + self._progress_interval_s - now
                slot.flush = asyncio.create_task(self._flush_progress(key, delay_s))
                self._timers.add(slot.flush)
                slot.flush.add_done_callback(self._timers.discard)
        return send_now

    async def _flush_progress(self, key: tuple[str, str], delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        slot = self._slot(key)
        notifier = self._notifiers.get(key[0])
        if slot is None or slot.held is None or notifier is None or self._closed:
            return
        notice, slot.held, slot.flush = slot.held, None, None
        slot.last_queued_at = time.monotonic()
        await self._queue(notice, [notifier])

    def _slot(self, key: tuple[str, str]) -> _ProgressSlot | None:
        name, workflow_id = key
        return self._progress.get(workflow_id, {}).get(name)

    def _drop_slot(self, key: tuple[str, str]) -> None:
        name, workflow_id = key
        slots = self._progress.get(workflow_id)
        if slots is None:
            return
        slot = slots.pop(name, None)
        if not slots:
            del self._progress[workflow_id]
        if slot is not None and slot.flush is not None:
            slot.flush.cancel()

    def _forget_progress(self, workflow_id: str) -> None:
        for slot in self._progress.pop(workflow_id, {}).values():
            if slot.flush is not None:
                slot.flush.cancel()

    # -- sending ----------------------------------------------------------------------------

    def _dispatch(self, row: OutboxRow) -> None:
        if row.id in self._inflight or self._closed:
            return
        self._inflight.add(row.id)
        task = asyncio.create_task(self._deliver(row), name=f"notifier-send-{row.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, row: OutboxRow) -> None:
        try:
            notifier = self._notifiers.get(row.notifier) or self._user_notifiers.get(row.notifier)
            if notifier is None:
                message = _NOT_CONFIGURED.format(notifier=row.notifier, id=row.id)
                await self._outbox.mark_failed(
                    row.id, attempts=row.attempts, error=message, now_s=time.time()
                )
                NOTIFICATIONS_SENT.labels(row.plugin, "failed").inc()
                _log("ERROR", f"notice {row.id}: {message}")
                return
            async with self._slots:
                await self._attempt(row, notifier)
        except StoreError as exc:
            _log("ERROR", f"notice {row.id}: outbox update failed ({exc}); it stays pending")
        except Exception as exc:  # noqa: BLE001 - a send task must never die silently
            _log("ERROR", f"notice {row.id}: unexpected error in the fanout: {_describe(exc)}")
        finally:
            self._inflight.discard(row.id)

    async def _attempt(self, row: OutboxRow, notifier: Notifier) -> None:
        timeout_s = self._settings.fanout.timeout
        attempt = row.attempts + 1
        label = notifier.plugin_name
        try:
            message = notifier.render(
                row.notice,
                idempotency_key=row.idempotency_key,
                attempt=attempt,
                timeout_s=timeout_s,
                settled_targets=row.settled_targets,
            )
            outcome = await asyncio.wait_for(notifier.plugin.send(row.notice, message), timeout_s)
        except SendError as exc:
            await self._attempt_failed(
                row,
                notifier,
                attempt,
                exc.message,
                transient=not isinstance(exc, PermanentSendError),
                timed_out=any(t.status is TargetStatus.TIMEOUT for t in exc.targets),
                retry_after_s=exc.retry_after_s,
                targets=_merge_targets(row.targets, exc.targets),
            )
            return
        except TimeoutError:
            error = (
                f"timed out after {timeout_s:g}s (fanout.timeout); the outcome is unknown "
                "(the sink may have it), so it is retried with the same idempotency key"
            )
            await self._attempt_failed(
                row, notifier, attempt, error, transient=True, timed_out=True, targets=row.targets
            )
            return
        except Exception as exc:  # noqa: BLE001 - a plugin bug is a transient failure, logged
            error = f"plugin {label!r} raised {_describe(exc)}"
            await self._attempt_failed(
                row, notifier, attempt, error, transient=True, targets=row.targets
            )
            return

        targets = _merge_targets(row.targets, outcome.targets)
        now = time.time()
        if outcome.status is SendStatus.SKIPPED:
            await self._outbox.mark_skipped(
                row.id, attempts=attempt, reason=outcome.detail, targets=targets, now_s=now
            )
            self._count(notifier, "skipped")
            _log("DEBUG", f"notice {row.id} to {notifier.name!r} skipped: {outcome.detail}")
            return
        dead = [t for t in targets.values() if t.get("status") == "failed" and t.get("settled")]
        if dead:
            shown = "; ".join(f"{t.get('target')}: {' | '.join(t.get('errors', []))}" for t in dead)
            some_sent = any(t.get("status") == "sent" for t in targets.values())
            prefix = "delivered to the other targets; " if some_sent else ""
            await self._attempt_failed(
                row,
                notifier,
                attempt,
                f"{prefix}failed for good: {shown}",
                transient=False,
                targets=targets,
            )
            return
        await self._outbox.mark_sent(
            row.id, attempts=attempt, targets=targets, now_s=now, note=outcome.detail or None
        )
        self._count(notifier, "sent")
        NOTIFICATION_LATENCY.labels(label).observe(max(0.0, now - row.created_at))
        _log(
            "DEBUG",
            f"notice {row.id} ({row.event.value} of workflow {row.workflow_id}) sent to "
            f"{notifier.name!r} (attempt {attempt})",
        )

    def _count(self, notifier: Notifier, outcome: str) -> None:
        """One attempt's outcome in the notifier metrics (and the users' own, for theirs)."""
        NOTIFICATIONS_SENT.labels(notifier.plugin_name, outcome).inc()
        if self._users is not None and is_user_notifier(notifier.name):
            self._users.sent(notifier.name, outcome)

    async def _attempt_failed(
        self,
        row: OutboxRow,
        notifier: Notifier,
        attempt: int,
        error: str,
        *,
        transient: bool,
        targets: Mapping[str, Mapping[str, Any]],
        timed_out: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        fanout = self._settings.fanout
        what = f"notice {row.id} ({row.event.value} of workflow {row.workflow_id}) to {notifier.name!r}"
        now = time.time()
        if transient and attempt < fanout.max_attempts:
            delay_s = backoff_delay_s(
                attempt, initial_s=fanout.backoff_initial, max_s=fanout.backoff_max, rng=self._rng
            )
            if retry_after_s is not None:
                delay_s = max(delay_s, retry_after_s)
            await self._outbox.mark_retry(
                row.id,
                attempts=attempt,
                error=error,
                next_attempt_at=now + delay_s,
                targets=targets,
                now_s=now,
            )
            self._count(notifier, "timeout" if timed_out else "retried")
            _log(
                "WARNING",
                f"{what}: attempt {attempt}/{fanout.max_attempts} failed: {error}; "
                f"retrying in {delay_s:.1f}s",
            )
            self._wake.set()
            return
        final = error if not transient else f"{error} (gave up after {attempt} attempts)"
        await self._outbox.mark_failed(
            row.id, attempts=attempt, error=final, targets=targets, now_s=now
        )
        self._count(notifier, "failed")
        _log("ERROR", f"{what} failed: {final}")

    # -- background -------------------------------------------------------------------------

    async def _resume(self) -> None:
        now = time.time()
        failed = await self._outbox.fail_pending_except(
            [*self._notifiers.keys(), *self._user_notifiers], error=_NOT_CONFIGURED, now_s=now
        )
        if failed:
            _log(
                "WARNING",
                f"{len(failed)} pending notice(s) belong to notifiers that are not configured; "
                f"marked failed (ids {', '.join(map(str, failed[:20]))})",
            )
        pending = await self._outbox.pending()
        if pending:
            _log("INFO", f"sending {len(pending)} notice(s) left pending by a previous run")
        for row in pending:
            self._dispatch(row)

    async def _retry_loop(self) -> None:
        while not self._closed:
            self._wake.clear()
            next_due: float | None = None
            try:
                if self._held:
                    await self._queue_held()
                for row in await self._outbox.due(
                    now_s=time.time(), limit=RETRY_BATCH, exclude=set(self._inflight)
                ):
                    self._dispatch(row)
                next_due = await self._outbox.next_due_at(exclude=set(self._inflight))
                await self._outbox.refresh_gauge()
            except StoreError as exc:
                _log("ERROR", f"outbox retry loop: {exc}")
            wait_s = self._poll_interval_s
            if next_due is not None:
                wait_s = min(self._poll_interval_s, max(0.0, next_due - time.time()))
            if self._held:
                wait_s = min(wait_s, self._held_delay_s)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)

    async def _retire(self, notifiers: Iterable[Notifier], tasks: set[asyncio.Task[None]]) -> None:
        if tasks:
            await asyncio.wait(tasks)
        await _close_plugins(notifiers)
