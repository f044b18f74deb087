"""`notifier notifiers list` and `notifier notifiers test NAME [--event completed]`.

`list` shows the configured notifiers (name, plugin, events, enabled) and every plugin there is
to choose from, built-in, from `fanout.plugin_dirs` or installed (entry points), with where each
came from, and the plugin files that did not load.

`test` sends one sample notice, now, through one notifier, and prints what the sink answered:
the notice is made up (a workflow that never ran, every text saying it is a test), it goes
through the notifier's own plugin, options and templates exactly as the bot would send it, but
not through the outbox (nothing is stored, nothing is retried) and without Discord. Exit 0 when
the sink took it, 1 when it did not (the error with the sink's status), 2 for a notifier or an
event that cannot be tested (an unknown name lists the known ones). The `dm` plugin sends
through the bot's Discord connection, which this command does not open: it says so instead of
pretending.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

from loguru import logger

from ..config import ConfigDocument, NotifierEntry, Settings, read_config_document, secret_values
from ..events import Event, Notice
from ..fanout.discovery import BUILTIN_PLUGIN_DIR, PluginRegistry, discover_plugins
from ..fanout.dispatch import Notifier, check_notifier
from ..fanout.plugin import (
    PermanentSendError,
    SendError,
    SendOutcome,
    SendStatus,
    TargetResult,
    TargetStatus,
)
from ..logs import redactor
from .common import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from .config_check import DEFAULT_CONFIG, offline_context

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["register", "sample_notice"]

TEST_COMMAND: Final = "notifier-test"
TEST_USER: Final = "notifier notifiers test"


def _out(line: str) -> None:
    print(redactor.redact(line), file=sys.stdout)


def _err(line: str) -> None:
    print(f"error: {redactor.redact(line)}", file=sys.stderr)


def _document(args: argparse.Namespace) -> ConfigDocument | None:
    """The config file named (or ./config.yaml); None, after printing every mistake, if it is
    not valid. Without --config and without ./config.yaml: the built-in defaults."""
    named = getattr(args, "config", None)
    if named is None and not DEFAULT_CONFIG.is_file():
        return ConfigDocument(None, Settings(), (), {})
    document = read_config_document(Path(named) if named is not None else DEFAULT_CONFIG)
    if document.settings is None:
        for problem in document.problems:
            for line in problem.lines():
                _err(line)
        return None
    redactor.add(secret_values(document.settings))
    return document


def _origin(registry: PluginRegistry, name: str) -> tuple[str, str]:
    """(kind, where) of a discovered plugin: built-in, plugin_dirs or an entry point."""
    source = registry.sources[name]
    if source.startswith("entry point"):
        return "installed", source
    path = Path(source)
    builtin = BUILTIN_PLUGIN_DIR.resolve()
    return ("built-in" if path.parent == builtin else "plugin_dirs"), source


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


async def _list_command(args: argparse.Namespace, _defaults: Settings) -> int:
    document = await asyncio.to_thread(_document, args)
    if document is None or document.settings is None:
        return EXIT_USAGE
    settings = document.settings
    logger.disable("notifier")  # the plugins that did not load are listed below, once
    try:
        registry = await asyncio.to_thread(discover_plugins, settings.fanout.plugin_dirs)
    finally:
        logger.enable("notifier")
    where = f" ({document.source})" if document.source else " (no config file: defaults)"
    _out(f"notifiers{where}:")
    if settings.notifiers:
        rows: list[tuple[str, ...]] = [("NAME", "PLUGIN", "EVENTS", "ENABLED")]
        rows += [
            (
                entry.name,
                entry.plugin,
                ", ".join(e.value for e in entry.on),
                "yes" if entry.enabled else "no",
            )
            for entry in settings.notifiers
        ]
        for line in _table(rows):
            _out(line)
    else:
        _out("  none")
    _out("plugins:")
    plugins: list[tuple[str, ...]] = [("NAME", "FROM", "WHERE")]
    plugins += [(name, *_origin(registry, name)) for name in registry.names]
    for line in _table(plugins):
        _out(line)
    if registry.errors:
        _out("plugin files that did not load:")
        for failure in registry.errors:
            _out(f"  {failure}")
    return EXIT_OK


def sample_notice(event: Event) -> Notice:
    """A made-up notice that says it is a test in every text a template can show."""
    return Notice(
        event=event,
        workflow_id=f"test{uuid.uuid4().hex[:28]}",
        user_id=0,
        user_name=TEST_USER,
        command=TEST_COMMAND,
        options={"url": "https://example.org/notifier-test", "depth": "quick"},
        summary="This is a test notice from `notifier notifiers test`; no workflow ran.",
        duration_s=42.0,
        estimate_s=86_400.0,
        error="none: this is a test notice, nothing failed",
        rung="test (no delivery)",
        progress=0.5,
        stage="testing the notifier",
    )


def _find(settings: Settings, name: str) -> tuple[int, NotifierEntry] | None:
    for index, entry in enumerate(settings.notifiers):
        if entry.name == name:
            return index, entry
    return None


def _targets(targets: tuple[TargetResult, ...]) -> list[str]:
    lines = []
    for target in targets:
        errors = f" ({' | '.join(target.errors)})" if target.errors else ""
        lines.append(f"  {target.target}: {target.status.value}{errors}")
    return lines


async def _send(
    notifier: Notifier, notice: Notice, timeout_s: float
) -> tuple[SendOutcome | None, str, tuple[TargetResult, ...]]:
    """The plugin's answer: its outcome, or (None, what went wrong, per-target results)."""
    try:
        outcome = await notifier.send_once(
            notice, idempotency_key=f"test-{uuid.uuid4().hex}", timeout_s=timeout_s
        )
        return outcome, "", ()
    except SendError as exc:
        later = (
            "retrying cannot help"
            if isinstance(exc, PermanentSendError)
            else "the bot would retry it"
        )
        return None, f"{exc.message} ({later})", exc.targets
    except TimeoutError:
        return None, f"no answer within {timeout_s:g}s (fanout.timeout)", ()
    except Exception as exc:  # noqa: BLE001 - a plugin's bug is this test's answer
        return None, f"the plugin raised {type(exc).__name__}: {exc}", ()


async def _test_command(args: argparse.Namespace, _defaults: Settings) -> int:
    document = await asyncio.to_thread(_document, args)
    if document is None or document.settings is None:
        return EXIT_USAGE
    settings = document.settings
    found = _find(settings, args.name)
    if found is None:
        names = [entry.name for entry in settings.notifiers]
        close = difflib.get_close_matches(args.name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        _err(f"no notifier is named {args.name!r}{hint} (configured: {', '.join(names) or 'none'})")
        return EXIT_USAGE
    index, entry = found
    event = Event(args.event)
    logger.disable("notifier")
    try:
        registry = await asyncio.to_thread(discover_plugins, settings.fanout.plugin_dirs)
    finally:
        logger.enable("notifier")
    cls = registry.get(entry.plugin)
    if cls is not None and event not in cls.events:
        accepts = ", ".join(sorted(e.value for e in cls.events))
        _err(f"plugin {cls.name!r} never receives {event.value!r} (it accepts: {accepts})")
        return EXIT_USAGE
    async with offline_context(settings) as offline:
        notifier, problems = check_notifier(
            index,
            entry,
            registry,
            offline.context,
            originals=document.originals,
            events=[event],
        )
        if notifier is None:
            for problem in problems:
                for line in document.locate(problem).lines():
                    _err(line)
            return EXIT_USAGE
        what = f"notifier {entry.name!r} ({entry.plugin}), event {event.value}"
        if not entry.enabled:
            _out(f"note: {entry.name!r} is disabled (enabled: false); testing it anyway")
        notice = sample_notice(event)
        try:
            outcome, failure, targets = await _send(notifier, notice, settings.fanout.timeout)
        finally:
            await notifier.plugin.close()
        if offline.dm_refused:
            # Said in one line, first; the other targets' answers (a URL beside the DM) follow.
            _out(
                f"not sent: {what}: the {entry.plugin} plugin sends DMs through the bot's "
                "Discord connection, which `notifiers test` does not open; test it with the "
                "bot running"
            )
            for line in _targets(outcome.targets if outcome is not None else targets):
                _out(line)
            return EXIT_NOT_FOUND
    if outcome is None:
        _out(f"failed: {what}: {failure}")
        for line in _targets(targets):
            _out(line)
        return EXIT_NOT_FOUND
    if outcome.status is SendStatus.SKIPPED:
        _out(f"not sent: {what}: the plugin skipped it ({outcome.detail})")
        return EXIT_NOT_FOUND
    _out(f"sent: {what}" + (f" ({outcome.detail})" if outcome.detail else ""))
    for line in _targets(outcome.targets):
        _out(line)
    failed = [t for t in outcome.targets if t.status is not TargetStatus.SENT]
    return EXIT_NOT_FOUND if failed else EXIT_OK


def register(subparsers: SubParsers) -> None:
    """`notifier notifiers list` and `notifier notifiers test`."""
    group = subparsers.add_parser(
        "notifiers",
        help="list the notifiers and plugins; send a test notice through one",
        description="The configured notifiers and the available plugins.",
    )
    commands = group.add_subparsers(title="commands", metavar="COMMAND")
    config_help = f"the config file (default: ./{DEFAULT_CONFIG})"

    listing = commands.add_parser(
        "list",
        help="the configured notifiers, then every available plugin and where it came from",
    )
    # SUPPRESS: `notifier --config F notifiers list` (the option before the group) is kept.
    listing.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, metavar="FILE", help=config_help
    )
    listing.set_defaults(handler=_list_command, load_settings=False)

    test = commands.add_parser(
        "test",
        help="send one sample notice through one notifier, now, and print what the sink answered",
        description=(
            "Send one made-up notice, marked as a test, through notifier NAME (its plugin, "
            "options and templates), without Discord and without the outbox; print what the "
            "sink answered. Exit 0: sent; 1: not sent; 2: unknown notifier or event."
        ),
    )
    test.add_argument("name", metavar="NAME", help="the notifier's name in the config")
    test.add_argument(
        "--event",
        default=Event.COMPLETED.value,
        choices=[e.value for e in Event],
        metavar="EVENT",
        help=f"the event to send (default: completed; one of {', '.join(e.value for e in Event)})",
    )
    test.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, metavar="FILE", help=config_help
    )
    test.set_defaults(handler=_test_command, load_settings=False)
