"""Run the notifier bot.

    python bot.py [--config config.yaml] [--demo] [--keep-running] [--verbose] [--demo-ttl S]

With a Discord token configured (`discord.token`, usually `${DISCORD_TOKEN}`) it connects to Discord.
Without one and without --config (or with --demo) it runs the demo: the embedded Discord
emulator, a slow local web site, an SMTP sink and a webhook sink on 127.0.0.1, and a user whose
`/autointel` outlives its interaction token; the timeline goes to stdout (see notifier/demo/run.py).
A bad config file, or a start-up failure (no token with --config, the metrics port taken, the
storage path unusable or held by another bot, a broken plugin under fanout.strict, a refused
token), prints one line naming the cause and exits with status 2, leaving nothing running; a
nextcord release without the private names the bot relies on (notifier/discord/compat.py) prints
one line and exits with status 3.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import sys
from pathlib import Path

from loguru import logger

from notifier.config import Settings, load_config
from notifier.demo.plan import DEFAULT_TTL_S, MAX_TTL_S, MIN_TTL_S
from notifier.errors import ConfigError, NextcordIncompatible, NotifierError
from notifier.logs import setup_logging

EXIT_CONFIG = 2  # the configuration, or what it points at, cannot be used: one line says why
DEFAULT_CONFIG = Path("config.yaml")
EMPTY_TOKEN = "discord.token is empty (set DISCORD_TOKEN), or run without --config for the demo"
EXIT_INCOMPATIBLE = 3  # the installed nextcord lacks a name notifier.discord.compat needs
_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default ./config.yaml; with --config, a token is required)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the demo (embedded Discord emulator, scripted users) even with a token",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="demo: stay up after the story (until Ctrl-C) to look around",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="demo: show the bot's log (stderr) at the configured level, not only warnings",
    )
    parser.add_argument(
        "--demo-ttl",
        type=_demo_ttl,
        default=DEFAULT_TTL_S,
        metavar="SECONDS",
        help=(
            f"demo: interaction-token lifetime (default {DEFAULT_TTL_S:g}; Discord's is 900); "
            "the hand-off, the slow site and so the whole story scale with it"
        ),
    )
    return parser.parse_args(argv)


def _demo_ttl(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not MIN_TTL_S <= value <= MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"must be between {MIN_TTL_S:g} and {MAX_TTL_S:g} seconds")
    return value


def is_demo(settings: Settings, args: argparse.Namespace) -> bool:
    return bool(args.demo) or settings.discord.token is None


async def run(
    settings: Settings,
    config_path: Path,
    *,
    demo: bool,
    keep_running: bool,
    demo_ttl_s: float = DEFAULT_TTL_S,
) -> int:
    import nextcord

    from notifier.app import NotifierBot
    from notifier.demo.run import run_demo
    from notifier.runner.gc_tuning import tune_garbage_collector

    if demo or settings.discord.token is None:
        return await run_demo(settings, config_path, keep_running=keep_running, ttl_s=demo_ttl_s)

    bot = NotifierBot(settings, config_path=config_path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(bot)))
    await bot.open()  # a NotifierError here has closed what it opened; main() prints it
    tune_garbage_collector()  # start-up objects frozen, fewer collections: see notifier.runner.gc_tuning
    assert settings.discord.token is not None
    runner = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stopper in done:
        logger.info("signal received: shutting down gracefully")
    await bot.close()
    stopper.cancel()
    failure = runner.exception() if runner in done else None
    if isinstance(failure, nextcord.LoginFailure):
        raise ConfigError("discord.token", "Discord refused the token (401 Unauthorized)")
    if failure is not None:
        logger.error("the bot stopped: {}", failure)
        return 1
    runner.cancel()
    return 0


async def _reload(bot: object) -> None:
    from notifier.app import NotifierBot

    assert isinstance(bot, NotifierBot)
    try:
        await bot.reload_config()
    except ConfigError as exc:
        logger.error("reload rejected, the running configuration stays: {}", exc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config_path: Path = args.config or DEFAULT_CONFIG
    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.discord.token is None and args.config is not None and not args.demo:
        # Asked for a real deployment (a config file named) but given no token: a systemd unit
        # with DISCORD_TOKEN unset must fail, not start the demo.
        print(f"error: {EMPTY_TOKEN}", file=sys.stderr)
        return EXIT_CONFIG
    level = settings.logging.level
    demo = is_demo(settings, args)
    if demo and not args.verbose and _LEVELS.index(level) < _LEVELS.index("WARNING"):
        level = "WARNING"  # the demo's timeline is on stdout; the log only speaks up for problems
    if demo and isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    setup_logging(level, file=settings.logging.file, serialize=settings.logging.json_format)
    try:
        return asyncio.run(
            run(
                settings,
                config_path,
                demo=demo,
                keep_running=args.keep_running,
                demo_ttl_s=args.demo_ttl,
            )
        )
    except NextcordIncompatible as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPATIBLE
    except NotifierError as exc:
        # A start-up failure (metrics port taken, storage path unusable or held by another bot,
        # a broken plugin under fanout.strict, a refused token): one line, nothing left running.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
