"""The request log tests assert on (what the bot actually sent, and what it got back)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

AuthKind = Literal["bot", "interaction-token", "webhook", "none", "invalid"]


@dataclass
class RequestRecord:
    """One REST request; ``status`` is ``None`` while pending or when dropped.

    ``response`` is the JSON body answered (error bodies included).
    """

    method: str
    path: str
    route: str | None
    at: float
    auth: AuthKind = "none"
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: list[str] = field(default_factory=list)
    status: int | None = None
    response: Any = None
    error_code: int | None = None
    fault: str | None = None


@dataclass(frozen=True)
class EmulatorStats:
    """Aggregates over the request log."""

    requests: int
    rate_limited: int
    faults: int
    by_status: Counter[int]
    by_route: Counter[str]


def summarize(records: list[RequestRecord]) -> EmulatorStats:
    """Count statuses, 429s and injected faults."""
    by_status: Counter[int] = Counter(r.status for r in records if r.status is not None)
    by_route: Counter[str] = Counter(f"{r.method} {r.route or r.path}" for r in records)
    return EmulatorStats(
        requests=len(records),
        rate_limited=by_status[429],
        faults=sum(1 for r in records if r.fault),
        by_status=by_status,
        by_route=by_route,
    )
