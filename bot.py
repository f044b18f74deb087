"""Run the notifier bot.

    python bot.py [--config config.yaml]

With a Discord token configured (`discord.token`, usually `${DISCORD_TOKEN}`) it connects to Discord.
Without one it starts the embedded Discord emulator on 127.0.0.1 and runs against that: the demo.
A bad config file prints one line naming the field and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from loguru import logger

from notifier.config import Settings, load_config
from notifier.errors import ConfigError
from notifier.logs import setup_logging

EXIT_CONFIG = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=Path("config.yaml"), help="config file (./config.yaml)"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against the embedded Discord emulator even if a token is configured",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="in demo mode, stay up after start-up instead of exiting",
    )
    return parser.parse_args(argv)


async def run(settings: Settings, config_path: Path, *, demo: bool, keep_running: bool) -> int:
    from notifier.app import NotifierBot
    from notifier.demo import run_demo

    if demo or settings.discord.token is None:
        return await run_demo(settings, config_path, keep_running=keep_running)

    bot = NotifierBot(settings, config_path=config_path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(bot)))
    await bot.open()
    assert settings.discord.token is not None
    runner = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stopper in done:
        logger.info("signal received: shutting down gracefully")
    await bot.close()
    stopper.cancel()
    if runner in done and runner.exception() is not None:
        logger.error("the bot stopped: {}", runner.exception())
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
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(
        settings.logging.level, file=settings.logging.file, serialize=settings.logging.json_format
    )
    try:
        return asyncio.run(
            run(settings, args.config, demo=args.demo, keep_running=args.keep_running)
        )
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
