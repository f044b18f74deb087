"""`notifier config check [--config FILE]`: everything a start would check, offline, at once.

A start stops at the first part that fails (the file, then the plugins, then each notifier, then
the workflows); an operator about to deploy wants every mistake in one go. This reads the file
the way the bot does (`notifier.config.read_config_document`: keys, types, values, `${VAR}`s),
then goes on past what is wrong with the sections that are right: the folders and files the
config names, the plugin files (`fanout.plugin_dirs` and the built-in ones), every enabled
notifier through the same check a start and a reload use (`check_notifier`: plugin name, events,
templates, the plugin's own option validation), and the workflows (`workflows.dirs`, the
installed ones, and every name under `workflows:`).

It prints one line per mistake, `FILE:LINE: path: what is wrong (got VALUE)`, and exits 2, or
prints `ok: N notifiers, M workflows` and exits 0. Nothing is sent and no Discord connection is
made; values from the environment are shown as their `${VAR}`, never their value.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from loguru import logger

from ..config import (
    ConfigDocument,
    Settings,
    read_config_document,
    resolve_paths,
    secret_values,
)
from ..errors import ConfigError
from ..fanout.discovery import PluginRegistry, discover_plugins
from ..fanout.dispatch import check_notifier
from ..fanout.plugin import PluginContext
from ..logs import redactor
from ..workflows.discovery import discover_workflows
from .common import EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["CheckReport", "check_config", "offline_context", "register"]

DEFAULT_CONFIG: Final = Path("config.yaml")


class NoDiscordConnection(RuntimeError):
    """A plugin asked to send a DM, which needs the running bot's Discord connection."""


@dataclass(frozen=True, slots=True)
class OfflineContext:
    """A plugin context for the CLI: real HTTP and executor, and a `send_dm` that refuses (there
    is no bot here). `dm_refused` says whether a plugin tried to DM someone."""

    context: PluginContext
    dm_refused: list[int]


@asynccontextmanager
async def offline_context(settings: Settings) -> AsyncIterator[OfflineContext]:
    """What a plugin is handed at start, without the bot: its DMs are refused, and recorded."""
    refused: list[int] = []

    async def send_dm(user_id: int, content: str, embed: dict[str, Any] | None) -> None:
        refused.append(user_id)
        raise NoDiscordConnection(
            "a DM needs the bot's Discord connection, which this command does not open"
        )

    executor = ThreadPoolExecutor(
        max_workers=settings.fanout.executor_workers, thread_name_prefix="notifier-cli-send"
    )
    try:
        async with aiohttp.ClientSession() as http:
            yield OfflineContext(
                PluginContext(
                    http=http,
                    executor=executor,
                    send_dm=send_dm,
                    discord_api_base=settings.discord.api_base,
                ),
                refused,
            )
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Every problem found, in the order to show them, and what a start would run."""

    problems: tuple[ConfigError, ...]
    notifiers: int
    workflows: int

    def lines(self) -> list[str]:
        if not self.problems:
            return [f"ok: {self.notifiers} notifiers, {self.workflows} workflows"]
        return [redactor.redact(line) for p in self.problems for line in p.lines()]


def _written(document: ConfigDocument, section: str, key: str) -> bool:
    """Whether the file itself sets `section.key`, in a section without other mistakes (a
    default, or a section replaced by its defaults, need not point anywhere yet)."""
    part = document.data.get(section)
    return isinstance(part, dict) and key in part and section not in document.broken_sections


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _place_problem(path: Path, *, folder: bool) -> str | None:
    """What stops a start from using `path` as a folder (the store) or a file (outbox, log):
    the other kind of thing is there, or a file stands where a parent folder has to be made."""
    if path.exists():
        if folder and not path.is_dir():
            return f"is a file, not a folder (got '{path}')"
        if not folder and path.is_dir():
            return f"is a folder, not a file (got '{path}')"
        return None
    blocker = _nearest_existing(path.parent)
    if not blocker.is_dir():
        return f"cannot be made: {blocker} is a file (got '{path}')"
    return None


def _path_problems(settings: Settings, document: ConfigDocument) -> list[ConfigError]:
    """The folders and files the config names, as a start would need them: the plugin folders
    it names, a storage folder (or a place to make one), files where files go. Sections that are
    wrong themselves are not looked at (their defaults stand in for them)."""
    problems: list[ConfigError] = []
    # The default folder (`plugins` beside the file, where an operator's own plugins go) may be
    # absent, as at start: no plugins of one's own. A folder named otherwise must be there.
    defaults = Settings().fanout.plugin_dirs
    if document.base_dir is not None:
        defaults = resolve_paths(Settings(), document.base_dir).fanout.plugin_dirs
    if _written(document, "fanout", "plugin_dirs"):
        for index, folder in enumerate(settings.fanout.plugin_dirs):
            where = f"fanout.plugin_dirs[{index}]"
            if not folder.exists():
                if folder not in defaults:
                    problems.append(ConfigError(where, f"folder not found (got '{folder}')"))
            elif not folder.is_dir():
                problems.append(ConfigError(where, f"is a file, not a folder (got '{folder}')"))
    places: list[tuple[str, Path | None, bool]] = [
        ("storage.path", settings.storage.path, True),
        ("fanout.outbox_path", settings.fanout.outbox_path, False),
        ("logging.file", settings.logging.file, False),
    ]
    for field, path, is_folder in places:
        if path is None or field.split(".")[0] in document.broken_sections:
            continue
        problem = _place_problem(path, folder=is_folder)
        if problem is not None:
            problems.append(ConfigError(field, problem))
    return problems


def _plugin_problems(registry: PluginRegistry) -> list[ConfigError]:
    """Plugin files that did not load: each names its own file (and line, for a syntax error)."""
    return [ConfigError("", failure.message, source=failure.source) for failure in registry.errors]


async def _notifier_problems(
    document: ConfigDocument, settings: Settings, registry: PluginRegistry
) -> tuple[list[ConfigError], int]:
    """Every enabled notifier entry through the check a start uses; the plugins it loads are
    closed again (nothing is sent)."""
    problems: list[ConfigError] = []
    checked = 0
    async with offline_context(settings) as offline:
        for index, entry in document.notifier_entries():
            if not entry.enabled:
                continue
            checked += 1
            notifier, found = check_notifier(
                index, entry, registry, offline.context, originals=document.originals
            )
            problems.extend(found)
            if notifier is not None:
                await notifier.plugin.close()
    return [document.locate(p) for p in problems], checked


def _workflow_problems(
    document: ConfigDocument, settings: Settings
) -> tuple[list[ConfigError], int]:
    discovered = discover_workflows(settings, base_dir=document.base_dir)
    problems: list[ConfigError] = []
    for problem in discovered.problems:
        if problem.field is not None:
            problems.append(document.locate(ConfigError(problem.field, problem.message)))
        else:
            problems.append(
                ConfigError("", problem.message, source=problem.source or None, line=problem.line)
            )
    return problems, len(discovered.enabled(settings))


def _in_order(problems: Iterable[ConfigError], source: str | None) -> tuple[ConfigError, ...]:
    """The config file's own problems by line, then those in other files (plugins, workflows)."""
    mine = [p for p in problems if p.source == source]
    others = [p for p in problems if p.source != source]
    return (*sorted(mine, key=lambda p: p.line or 0), *others)


async def check_config(path: Path, *, env: Mapping[str, str] | None = None) -> CheckReport:
    """Everything a start with `path` would check (see the module's docstring). Blocking parts
    (reading the file, importing plugin and workflow files) run in threads."""
    document = await asyncio.to_thread(read_config_document, path, env=env)
    if document.root is None and document.settings is None:
        return CheckReport(document.problems, 0, 0)  # unreadable, or not YAML: nothing to go on
    settings = document.usable_settings()
    redactor.add(secret_values(settings))
    problems: list[ConfigError] = list(document.problems)
    problems += [document.locate(p) for p in _path_problems(settings, document)]
    registry = await asyncio.to_thread(discover_plugins, settings.fanout.plugin_dirs)
    problems += _plugin_problems(registry)
    found, notifiers = await _notifier_problems(document, settings, registry)
    problems += found
    found, workflows = await asyncio.to_thread(_workflow_problems, document, settings)
    problems += found
    return CheckReport(_in_order(problems, document.source), notifiers, workflows)


async def _check_command(args: argparse.Namespace, _defaults: Settings) -> int:
    path = Path(getattr(args, "config", None) or DEFAULT_CONFIG)
    # Discovery logs what it skips, and Apprise what it cannot parse; here every problem is
    # printed once, as a line of the report.
    apprise_log = logging.getLogger("apprise")
    apprise_was_disabled, apprise_log.disabled = apprise_log.disabled, True
    logger.disable("notifier")
    try:
        report = await check_config(path)
    finally:
        logger.enable("notifier")
        apprise_log.disabled = apprise_was_disabled
    for line in report.lines():
        print(line, file=sys.stdout)
    return EXIT_USAGE if report.problems else EXIT_OK


def register(subparsers: SubParsers) -> None:
    """`notifier config check`."""
    group = subparsers.add_parser(
        "config",
        help="check a config file before deploying it",
        description="Check a configuration file offline.",
    )
    commands = group.add_subparsers(title="commands", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="everything a start would check; every mistake at once, one line each",
        description=(
            "Check FILE as the bot's start would (keys, types, values, paths, plugin files, "
            "every notifier's plugin, events, templates and options, workflows) and print "
            "every mistake as FILE:LINE: path: what is wrong; exit 2 if there is any, else "
            "print 'ok: N notifiers, M workflows' and exit 0. Nothing is sent."
        ),
    )
    # SUPPRESS: `notifier --config F config check` (the option before the group) is kept.
    check.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"the config file (default: ./{DEFAULT_CONFIG})",
    )
    check.set_defaults(handler=_check_command, load_settings=False)
