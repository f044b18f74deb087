"""`notifier worker`: run workflows from the PostgreSQL queue, with no Discord gateway.

Start any number of them beside one or more gateways (``notifier run --role gateway``) on the
same ``storage.postgres_dsn`` and bot token; `notifier.distributed` says how they share the work
and survive each other. SIGTERM/SIGINT stop a worker gracefully: running workflows stop at their
next step boundary and are handed to another worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..config import Settings, load_config
from ..errors import ConfigError, NotifierError
from ..logs import setup_logging
from .common import EXIT_OK, EXIT_USAGE

__all__ = ["register"]

DEFAULT_CONFIG = Path("config.yaml")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="run workflows queued by gateways (storage.backend: postgres), no gateway",
        description=(
            "Take workflow jobs from PostgreSQL and run them to delivered results; several "
            "workers share the queue. SIGTERM/SIGINT stop gracefully."
        ),
    )
    worker.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"config file (default: ./{DEFAULT_CONFIG})",
    )
    worker.set_defaults(handler=_worker_command, load_settings=False)


def _error(line: str) -> None:
    print(f"error: {line}", file=sys.stderr)


async def _worker_command(args: argparse.Namespace, _defaults: Settings) -> int:
    try:
        settings = await asyncio.to_thread(load_config, args.config)
    except ConfigError as exc:
        for line in exc.lines():
            _error(line)
        return EXIT_USAGE
    setup_logging(
        settings.logging.level,
        file=settings.logging.file,
        serialize=settings.logging.json_format,
    )
    try:
        # psycopg and procrastinate (the postgres extra) are needed from here on only.
        from ..distributed.worker import Worker

        worker = Worker(settings)
    except ImportError as exc:
        _error(
            f"the worker needs the postgres extra (pip install 'nextcord-notifier[postgres]'): {exc}"
        )
        return EXIT_USAGE
    except ConfigError as exc:
        for line in exc.lines():
            _error(line)
        return EXIT_USAGE
    if settings.distributed.worker_nice:
        # Workflows are batch work; a gateway on the same machine answers users (see config).
        os.nice(settings.distributed.worker_nice)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    except NotifierError as exc:
        _error(str(exc))
        return EXIT_USAGE
    return EXIT_OK
