"""Fault injection: make chosen REST calls fail the way Discord/Cloudflare do.

Three kinds cover what a bot must survive: ``status`` (a 5xx answer with a
Discord-like body; nextcord retries 500/502/504 and raises
``DiscordServerError`` otherwise), ``hang`` (no answer for ``delay_s``, or
until the emulator closes) and ``drop`` (the TCP connection is closed with
no answer at all).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "hang", "drop"]


@dataclass
class Fault:
    """One injected fault; ``remaining`` is ``None`` for "every time"."""

    method: str
    pattern: str | re.Pattern[str]
    kind: FaultKind
    remaining: int | None = 1
    status: int = 500
    delay_s: float | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """``path`` is relative to ``/api/v10``; str patterns are fnmatch globs."""
        if self.method not in ("*", method.upper()):
            return False
        if isinstance(self.pattern, re.Pattern):
            return self.pattern.search(path) is not None
        return fnmatch.fnmatchcase(path, self.pattern)


class FaultInjector:
    """Holds active faults and consumes them as matching requests arrive."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        if fault.kind not in ("status", "hang", "drop"):
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        self.faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first active fault for this request, counting the hit."""
        for fault in self.faults:
            if fault.remaining == 0 or not fault.matches(method, path):
                continue
            fault.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault
        return None

    def clear(self) -> None:
        self.faults.clear()


def status_message(status: int) -> str:
    """Discord's generic body message for a 5xx."""
    names = {
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    return f"{status}: {names.get(status, 'Server Error')}"
