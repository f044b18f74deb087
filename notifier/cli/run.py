"""Starting the bot: `notifier run`, `notifier demo` and `bot.py`, one start-up shared by the three.

    notifier run [--config FILE]          the bot, connected to Discord (a token is required)
    notifier demo [--config FILE] [--keep-running] [--verbose] [--demo-ttl S]
                  [--workflow NAME] [--option KEY=VALUE ...]
    python bot.py [--config FILE] [--demo] [the demo's flags]

`bot.py` (the one-file entry of a source checkout) decides between the two: with a Discord token
configured (`discord.token`, usually `${DISCORD_TOKEN}`) it connects to Discord; without one and
without --config (or with --demo, --workflow or --option) it runs the demo (the embedded Discord
emulator, a slow local web site, an SMTP sink and a webhook sink on 127.0.0.1, and a user whose
`/autointel` outlives its interaction token; see notifier/demo/run.py). With --config and no
token it stops: a systemd unit with DISCORD_TOKEN unset must fail, not start the demo.

A bad config file prints one line per mistake; a start-up failure (no token, the metrics port
taken, the storage path unusable or held by another bot, a broken plugin under fanout.strict, a
refused token, a shard Discord refuses because another process holds it) one line naming the
cause. Both exit with status 2, leaving nothing running. A nextcord release without the private
names the bot relies on (notifier/discord/compat.py) prints one line and exits with status 3.
SIGTERM and SIGINT stop the bot gracefully (exit 0); SIGHUP re-reads the config file (an invalid
one is rejected and the running configuration stays).

Nothing here imports nextcord, the bot or the demo before it is needed: the compatibility check
runs when the bot is first imported, inside `launch`, so its failure is the one line above.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn

from loguru import logger

from ..config import Settings, load_config
from ..demo.plan import DEFAULT_TTL_S, MAX_TTL_S, MIN_TTL_S
from ..errors import ConfigError, NextcordIncompatible, NotifierError
from ..logs import setup_logging

if TYPE_CHECKING:
    from ..app import NotifierBot, Role, ShardedNotifierBot
    from .common import SubParsers

__all__ = [
    "DEFAULT_CONFIG",
    "EMPTY_TOKEN",
    "EXIT_CONFIG",
    "EXIT_INCOMPATIBLE",
    "Launch",
    "bot_py_main",
    "launch",
    "register",
]

EXIT_CONFIG: Final = 2  # the configuration, or what it points at, cannot be used: a line says why
EXIT_INCOMPATIBLE: Final = 3  # the installed nextcord lacks a name notifier.discord.compat needs
DEFAULT_CONFIG: Final = Path("config.yaml")
EMPTY_TOKEN: Final = (
    "discord.token is empty (set DISCORD_TOKEN), or run without --config for the demo"
)
RUN_EMPTY_TOKEN: Final = (
    "discord.token is empty (set DISCORD_TOKEN); `notifier demo` runs without a token"
)
_LEVELS: Final = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
_OPTION_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# What a start asks for. "auto" is bot.py's choice (the demo without a token unless --config was
# named); "bot" is `notifier run` (a token or nothing); "demo" is `notifier demo`.
Mode = Literal["auto", "bot", "demo"]


@dataclass(frozen=True, slots=True)
class Launch:
    """One start of the bot or the demo, as the command line asked for it."""

    mode: Mode
    config: Path | None = None  # None: ./config.yaml (for the demo: built-in defaults if absent)
    demo: bool = False  # bot.py --demo: the demo even with a token configured
    keep_running: bool = False
    verbose: bool = False
    demo_ttl_s: float = DEFAULT_TTL_S
    workflow: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    role: Role = "all"  # notifier run --role: workflows here, or queued for workers

    @property
    def wants_demo(self) -> bool:
        """Asked for the demo in so many words (a flag only the demo uses counts)."""
        return self.demo or self.workflow is not None or bool(self.options)


# --- the command line -------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit 2); `--help` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see --help)\n")


def _demo_ttl(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not MIN_TTL_S <= value <= MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"must be between {MIN_TTL_S:g} and {MAX_TTL_S:g} seconds")
    return value


class _CollectOptions(argparse.Action):
    """`--option KEY=VALUE`, repeatable, into one dict; a malformed or repeated one is refused."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        text = str(values)
        key, equals, value = text.partition("=")
        if not equals or not _OPTION_KEY.fullmatch(key):
            raise argparse.ArgumentError(
                self, f"{text!r} is not KEY=VALUE (a workflow option's name, '=', its value)"
            )
        options: dict[str, str] = dict(getattr(namespace, self.dest, None) or {})
        if key in options:
            raise argparse.ArgumentError(self, f"{key!r} is given twice")
        options[key] = value
        setattr(namespace, self.dest, options)


def _add_config_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    # SUPPRESS: `notifier --config F run` (the option before the command) is not overwritten.
    parser.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, metavar="FILE", help=help_text
    )


def _add_demo_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help=f"{prefix}stay up after the story (until Ctrl-C) to look around",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"{prefix}show the bot's log (stderr) at the configured level, not only warnings",
    )
    parser.add_argument(
        "--demo-ttl",
        type=_demo_ttl,
        default=DEFAULT_TTL_S,
        metavar="SECONDS",
        help=(
            f"{prefix}interaction-token lifetime (default {DEFAULT_TTL_S:g}; Discord's is 900); "
            "the hand-off, the slow site and so the whole story scale with it"
        ),
    )
    parser.add_argument(
        "--workflow",
        metavar="NAME",
        default=None,
        help=f"{prefix}play this workflow instead of the /autointel story",
    )
    parser.add_argument(
        "--option",
        dest="options",
        action=_CollectOptions,
        default={},
        metavar="KEY=VALUE",
        help=f"{prefix}an option of the workflow played (repeatable)",
    )


def bot_py_parser(description: str) -> argparse.ArgumentParser:
    """bot.py's arguments. No abbreviations: scripts/run-bot finds `--config` by its full name
    to resolve the path where it was typed."""
    parser = OneLineParser(prog="bot.py", description=description, allow_abbrev=False)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="config file (default ./config.yaml; with --config, a token is required)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the demo (embedded Discord emulator, scripted users) even with a token",
    )
    _add_demo_arguments(parser, prefix="demo: ")
    return parser


def bot_py_main(argv: Sequence[str] | None = None, *, description: str = "") -> int:
    """bot.py: parse its arguments, start the bot or the demo, return the exit status."""
    try:
        args = bot_py_parser(description).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    request = Launch(
        mode="auto",
        config=args.config,
        demo=args.demo,
        keep_running=args.keep_running,
        verbose=args.verbose,
        demo_ttl_s=args.demo_ttl,
        workflow=args.workflow,
        options=args.options,
    )
    try:
        return asyncio.run(launch(request))
    except KeyboardInterrupt:
        return 130


def register(subparsers: SubParsers) -> None:
    """`notifier run` and `notifier demo`."""
    run = subparsers.add_parser(
        "run",
        help="run the bot, connected to Discord (needs DISCORD_TOKEN)",
        description=(
            "Run the bot, connected to Discord. SIGTERM/SIGINT stop it gracefully, SIGHUP "
            "re-reads the config file."
        ),
    )
    _add_config_argument(run, f"config file (default: ./{DEFAULT_CONFIG})")
    run.add_argument(
        "--role",
        choices=("all", "gateway"),
        default="all",
        help=(
            "all (default): run workflows in this process; gateway: hold the Discord gateway "
            "and queue workflows for `notifier worker` processes (storage.backend: postgres)"
        ),
    )
    run.set_defaults(handler=_run_command, load_settings=False)

    demo = subparsers.add_parser(
        "demo",
        help="the whole story on this machine, no Discord account needed",
        description=(
            "Play the demo: an embedded Discord emulator, a slow web site, an SMTP sink and a "
            "webhook on 127.0.0.1, and a user whose workflow outlives its interaction token."
        ),
    )
    _add_config_argument(
        demo,
        f"take the runner, progress, logging and fanout retry settings from FILE "
        f"(default: ./{DEFAULT_CONFIG} if there is one)",
    )
    _add_demo_arguments(demo)
    demo.set_defaults(handler=_demo_command, load_settings=False)


async def _run_command(args: argparse.Namespace, _defaults: Settings) -> int:
    return await launch(
        Launch(mode="bot", config=getattr(args, "config", None), role=getattr(args, "role", "all"))
    )


async def _demo_command(args: argparse.Namespace, _defaults: Settings) -> int:
    config = getattr(args, "config", None)
    return await launch(
        Launch(
            mode="demo",
            config=Path(config) if config is not None else None,
            keep_running=args.keep_running,
            verbose=args.verbose,
            demo_ttl_s=args.demo_ttl,
            workflow=args.workflow,
            options=args.options,
        )
    )


# --- the start ----------------------------------------------------------------------------------


def _error(line: str) -> None:
    print(f"error: {line}", file=sys.stderr)


def _config_path(request: Launch) -> Path | None:
    """The file to read; None: the demo on built-in defaults (no --config, no ./config.yaml)."""
    if request.config is not None:
        return Path(request.config)
    if request.mode == "demo" and not DEFAULT_CONFIG.is_file():
        return None
    return DEFAULT_CONFIG


async def launch(request: Launch) -> int:
    """Read the config, then run the bot or the demo until it ends; return the exit status."""
    path = _config_path(request)
    try:
        # Reading the file blocks; the loop has nothing else to do yet, but it stays free anyway.
        settings = await asyncio.to_thread(load_config, path) if path else Settings()
    except ConfigError as exc:
        for line in exc.lines():
            _error(line)
        return EXIT_CONFIG
    token_missing = settings.discord.token is None
    if request.mode == "bot" and token_missing:
        _error(RUN_EMPTY_TOKEN)
        return EXIT_CONFIG
    if request.mode == "auto" and token_missing and request.config and not request.wants_demo:
        # Asked for a real deployment (a config file named) but given no token.
        _error(EMPTY_TOKEN)
        return EXIT_CONFIG
    demo = request.mode == "demo" or (
        request.mode == "auto" and (token_missing or request.wants_demo)
    )
    level = settings.logging.level
    if demo and not request.verbose and _LEVELS.index(level) < _LEVELS.index("WARNING"):
        level = "WARNING"  # the demo's timeline is on stdout; the log only speaks up for problems
    if demo and isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    setup_logging(level, file=settings.logging.file, serialize=settings.logging.json_format)
    try:
        if demo:
            from ..demo.run import run_demo

            return await run_demo(
                settings,
                path,
                keep_running=request.keep_running,
                ttl_s=request.demo_ttl_s,
                workflow=request.workflow,
                options=dict(request.options),
            )
        return await serve(settings, path or DEFAULT_CONFIG, role=request.role)
    except NextcordIncompatible as exc:
        _error(str(exc))
        return EXIT_INCOMPATIBLE
    except ConfigError as exc:
        for line in exc.lines():
            _error(line)
        return EXIT_CONFIG
    except NotifierError as exc:
        # A start-up failure (metrics port taken, storage path unusable or held by another bot,
        # a broken plugin under fanout.strict): one line, nothing left running.
        _error(str(exc))
        return EXIT_CONFIG


async def serve(settings: Settings, config_path: Path, *, role: Role = "all") -> int:
    """Run the bot against Discord until a signal (0) or a failure (1; a refused token raises)."""
    from nextcord import LoginFailure

    from ..app import build_bot
    from ..discord.identify import shard_refusal
    from ..runner.gc_tuning import tune_garbage_collector

    token = settings.discord.token
    assert token is not None
    # Sharded with discord.shard_count; a gateway queues its workflows for workers.
    bot = build_bot(settings, config_path=config_path, role=role)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(bot)))
    await bot.open()  # a NotifierError here has closed what it opened; launch prints it
    tune_garbage_collector()  # start-up objects frozen, fewer collections: see notifier.runner.gc_tuning
    runner = asyncio.create_task(bot.start(token.get_secret_value()))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stopper in done:
        logger.info("signal received: shutting down gracefully")
    await bot.close()
    stopper.cancel()
    failure = runner.exception() if runner in done else None
    if isinstance(failure, LoginFailure):
        raise ConfigError("discord.token", "Discord refused the token (401 Unauthorized)")
    refused = shard_refusal(failure, settings.discord.shard_count) if failure else None
    if refused is not None:  # 4010/4011: a shard held elsewhere, or the shard settings are wrong
        raise refused
    if failure is not None:
        logger.error("the bot stopped: {}", failure)
        return 1
    runner.cancel()
    return 0


async def _reload(bot: NotifierBot | ShardedNotifierBot) -> None:
    try:
        await bot.reload_config()
    except ConfigError as exc:
        for line in exc.lines():  # every mistake of the file, one line each
            logger.error("reload rejected, the running configuration stays: {}", line)
