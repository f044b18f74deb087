"""What a search of stored results may ask for, independent of the database that answers it.

Kept apart from the SQLite index so the PostgreSQL backend can take the same object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..records import WorkflowStatus

__all__ = ["MAX_PAGE_SIZE", "ResultQuery"]

# One page is read into memory at once; beyond this a caller should page with `offset`.
MAX_PAGE_SIZE: Final = 10_000


@dataclass(frozen=True, slots=True)
class ResultQuery:
    """Filters are combined with AND; None means "any". Times are Unix seconds on `created_at`
    (when the workflow started), `since` inclusive and `until` exclusive, so consecutive ranges do
    not count a workflow twice. `url_contains` is a plain substring, case-insensitive: no wildcard
    characters, so ``%`` and ``_`` match themselves. Results come newest first."""

    user_id: int | None = None
    url_contains: str | None = None
    status: WorkflowStatus | None = None
    since: float | None = None
    until: float | None = None
    command: str | None = None
    limit: int = 25
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {self.limit}")
        if self.offset < 0:
            raise ValueError(f"offset must not be negative, got {self.offset}")
        if self.status is not None and not isinstance(self.status, WorkflowStatus):
            raise ValueError(f"status must be a WorkflowStatus, got {self.status!r}")
