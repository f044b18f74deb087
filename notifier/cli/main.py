"""The `notifier` command (also ``python -m notifier``): ``notifier [--config FILE] <group> ...``.

`run` starts the bot, `demo` plays the no-token demo, `init` writes a config file to start from
(see `run` and `init`). The operator commands work without Discord: they open the result store
directly (``maintain=False``, so it is safe beside a running bot: no reconciliation, no retention
as a side effect of looking). Commands that delete (`results purge`) take the store's lock and
refuse while the bot holds it; `outbox retry` only requeues, and the running bot sends (see
`results` and `outbox`).

Command groups register themselves: a group is a function that adds one subparser to the top-level
``subparsers`` and sets ``handler`` (an async function ``(args, settings) -> exit code``) on each of
its commands. `COMMAND_GROUPS` lists them (`results.register`, `outbox.register`); to add one,
write its module like `results` and append its ``register`` there. A command that reads the
config file its own way sets ``load_settings=False`` (``set_defaults``): it is then handed the
built-in defaults and ``args.config`` is left to it.

Errors are one line on stderr, never a traceback: exit 2 for usage (bad id, bad duration, bad
config), 1 for "not found" or a store that cannot answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn, cast

from ..config import Settings, load_config
from ..errors import ConfigError, InvalidWorkflowId, StoreError
from . import (
    config_check,
    db,
    init,
    notifiers,
    outbox,
    results,
    run,
    store_migrate,
    users,
    worker,
)
from .common import EXIT_NOT_FOUND, EXIT_USAGE, CommandError, Handler

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]

DEFAULT_CONFIG: Final = Path("config.yaml")

GroupRegistrar = Callable[["SubParsers"], None]

COMMAND_GROUPS: list[GroupRegistrar] = [
    run.register,  # run, demo
    init.register,
    results.register,
    outbox.register,
    config_check.register,  # config check
    notifiers.register,  # notifiers list, notifiers test
    db.register,  # db migrate, db status (PostgreSQL's schema)
    worker.register,  # worker (distributed mode: runs queued workflows)
    store_migrate.register,  # store migrate (SQLite store and outbox into PostgreSQL)
    users.register,  # users list, users show, users forget (users' own notices, /notify)
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as for every other error; `--help` still shows the full usage.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _prog() -> str:
    """How the user ran us, for usage lines: the console script, or ``python -m notifier``."""
    return "python -m notifier" if Path(sys.argv[0]).name == "__main__.py" else "notifier"


def build_parser(
    groups: Sequence[GroupRegistrar] = COMMAND_GROUPS, *, prog: str | None = None
) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog or _prog(),
        description=(
            "The notifier bot (run, demo), its configuration (init, config check), its "
            "notifiers and the operator commands (results, outbox); only run needs Discord."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"configuration file (default: {DEFAULT_CONFIG}, or built-in defaults if absent)",
    )
    # Typed as plain ArgumentParser subparsers so group modules need not know `_Parser`.
    subparsers = cast("SubParsers", parser.add_subparsers(title="groups", metavar="GROUP"))
    for register in groups:
        register(subparsers)
    return parser


def _settings(config: str | None) -> Settings:
    if config is not None:
        return load_config(config)
    if DEFAULT_CONFIG.is_file():
        return load_config(DEFAULT_CONFIG)
    return Settings()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from ..logs import setup_logging

    setup_logging("WARNING")
    try:
        # A command that reads the config its own way (`config check` reports every mistake,
        # `run` starts the bot) sets `load_settings=False` and is handed built-in defaults.
        settings = _settings(args.config) if getattr(args, "load_settings", True) else Settings()
        return asyncio.run(handler(args, settings))
    except ConfigError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (InvalidWorkflowId, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:
        return 130
