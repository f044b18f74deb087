"""Logging set-up with loguru, and the redactor that keeps configured secrets out of every line.

Every handler gets `Redactor.patch` as its patcher, so a secret is masked whether it arrives in the
message, an exception's text or a bound extra; the same redactor serves error messages shown to
users (`redactor.redact(text)`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["Redactor", "redactor", "register_outage", "setup_logging"]

MASK = "***"


class Redactor:
    """Replaces known secret strings (and Discord bot tokens by shape) with a mask."""

    # A Discord bot token: base64 id . 6 chars . 27+ chars. Masked even when nobody registered it.
    _BOT_TOKEN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")
    # Its middle part, which every token holds. Searching for it first is the fast path: the full
    # pattern has no literal to skip ahead to, so `re` tries it at every position (1.3 ms over
    # 100 KB of prose, holding the GIL, the event loop's included); this one starts with a literal
    # "." and takes 0.08 ms. Only text that holds it pays for the full pattern (BENCHMARKS.md,
    # section 8: a 100 KB step went from 7-9x a raw write's p99 to under 2x).
    _BOT_TOKEN_MIDDLE = re.compile(r"\.[A-Za-z0-9_-]{6,7}\.")
    # A webhook URL carries its token in the path.
    _WEBHOOK = re.compile(r"(/webhooks/\d+/)[A-Za-z0-9_.-]{8,}")

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, secrets: Iterable[str]) -> None:
        known = set(self._secrets)
        for secret in secrets:
            if secret and len(secret) >= 4 and secret not in known:
                self._secrets.append(secret)
                known.add(secret)
        self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if self._BOT_TOKEN_MIDDLE.search(text) is not None:
            text = self._BOT_TOKEN.sub(MASK, text)
        if "/webhooks/" in text:
            text = self._WEBHOOK.sub(rf"\g<1>{MASK}", text)
        return text

    def patch(self, record: Record) -> None:
        record["message"] = self.redact(record["message"])
        exception = record["exception"]
        if exception is not None and exception.value is not None:
            exception.value.args = tuple(
                self.redact(a) if isinstance(a, str) else a for a in exception.value.args
            )
        for key, value in list(record["extra"].items()):
            if isinstance(value, str):
                record["extra"][key] = self.redact(value)


redactor = Redactor()


OutageExplainer = Callable[[BaseException], "str | None"]
"""Says in words why an exception is an outage the process rides out, or None if it is not."""

_outages: list[OutageExplainer] = []


def register_outage(explain: OutageExplainer) -> None:
    """Teach the stdlib bridge an outage that a library logs with a traceback though the process
    survives it: procrastinate logs a PostgreSQL connection lost to a restart or a failover (its
    abort poll, a job whose status could not be written) as an error with the whole chain, and
    the notifier worker rides it out. Such a record becomes one WARNING line, the library's
    message and `explain`'s reason, so that a traceback in an operator's log still means a bug.
    Registering the same function again is a no-op."""
    if explain not in _outages:
        _outages.append(explain)


def _outage_reason(record: logging.LogRecord) -> str | None:
    error = record.exc_info[1] if record.exc_info else None
    if error is None:
        return None
    for explain in _outages:
        reason = explain(error)
        if reason:
            return reason
    return None


class _InterceptHandler(logging.Handler):
    """Routes stdlib logging (nextcord, aiohttp, apprise) into loguru, so one redactor sees all."""

    def emit(self, record: logging.LogRecord) -> None:
        reason = _outage_reason(record)
        if reason is not None:
            message = " ".join(record.getMessage().split())  # procrastinate's span lines
            logger.opt(depth=6).warning("{}: {}", message, reason)
            return
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


_LOG_FILE_MODE = 0o600


def _private_opener(path: str, flags: int) -> int:
    fd = os.open(path, flags, _LOG_FILE_MODE)
    os.fchmod(fd, _LOG_FILE_MODE)  # the umask may only take bits away, but be exact anyway
    return fd


def setup_logging(
    level: str = "INFO", *, file: Path | None = None, serialize: bool = False, sink: Any = None
) -> None:
    """Configure loguru once for the process: stderr (or `sink`) and an optional file."""
    logger.remove()
    logger.configure(patcher=redactor.patch)
    fmt = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {name}: {message}"
    # diagnose=False: loguru would print every variable of every frame of a logged traceback, and
    # those hold what the redactor never sees (the request headers with `Bot <token>`, a notifier's
    # options with their passwords). The frames' source lines are still shown.
    logger.add(
        sink or sys.stderr,
        level=level,
        format=fmt,
        serialize=serialize,
        backtrace=False,
        diagnose=False,
    )
    if file is not None:
        # Owner-only like the results: log lines name users and the URLs they asked about.
        file.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            file.chmod(_LOG_FILE_MODE)  # one left from before, or restored from a copy
        logger.add(
            file,
            level=level,
            format=fmt,
            serialize=serialize,
            enqueue=True,
            rotation="50 MB",
            backtrace=False,
            diagnose=False,
            opener=_private_opener,  # passed on to open(), also for each rotated file
        )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for noisy in ("nextcord.gateway", "nextcord.http", "nextcord.client", "nextcord.state"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # This bot has no voice features; nextcord's note about PyNaCl is noise for its operators.
    logging.getLogger("nextcord.client").addFilter(lambda r: "PyNaCl" not in r.getMessage())
