"""What every CLI command group shares: exit codes, the one-line error, duration parsing."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ..config import Settings

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = [
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "Handler",
    "parse_duration_s",
    "parse_moment",
    "utc_minute",
]

EXIT_OK: Final = 0
EXIT_NOT_FOUND: Final = 1
EXIT_USAGE: Final = 2

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

_UNITS_S: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class CommandError(Exception):
    """A command cannot do what was asked; the message is the one line the operator sees."""

    def __init__(self, message: str, exit_code: int = EXIT_NOT_FOUND) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_duration_s(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w``, or combined (``1d12h``) -> seconds."""
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise CommandError(
            f"{text!r} is not a duration (use e.g. 30d, 12h, 90m, 45s, 2w)", EXIT_USAGE
        )
    return sum(float(n) * _UNITS_S[unit] for n, unit in _DURATION_PART.findall(cleaned))


def parse_moment(text: str, *, now: float) -> float:
    """A point in time: a duration ago (``7d``) or an ISO date/time (naive means UTC)."""
    cleaned = text.strip()
    if _DURATION.fullmatch(cleaned.lower()):
        return now - parse_duration_s(cleaned)
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise CommandError(
            f"{text!r} is neither a duration (7d, 12h) nor an ISO date (2026-01-31T12:00)",
            EXIT_USAGE,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def utc_minute(timestamp: float | None) -> str:
    """A stored time as ``YYYY-MM-DD HH:MM`` (UTC), or "-" when there is none (unset, not a
    number, or 0)."""
    if timestamp is None or not math.isfinite(timestamp) or timestamp <= 0:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")
