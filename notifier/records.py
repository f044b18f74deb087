"""The index row of one workflow: what the store keeps about it besides the result itself."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import InvalidWorkflowId

__all__ = [
    "DeliveryState",
    "ProgressState",
    "RecordedStep",
    "StoredResult",
    "WorkflowRecord",
    "WorkflowStatus",
    "new_workflow_id",
    "validate_workflow_id",
]

# 32 lowercase hex digits: a uuid4 without dashes. Nothing else may name a file in the store.
_WORKFLOW_ID = re.compile(r"[0-9a-f]{32}")


def new_workflow_id() -> str:
    """A 128-bit random id (uuid4), as 32 hex digits: safe as a file name, unguessable."""
    return uuid.uuid4().hex


def validate_workflow_id(value: object) -> str:
    """Return `value` as a workflow id, or raise InvalidWorkflowId before it nears the filesystem.

    Accepts the dashed uuid form a user may paste and normalises it; refuses anything else, so no
    path separator, glob character or dot-dot can ever reach a path.
    """
    if not isinstance(value, str):
        raise InvalidWorkflowId("a workflow id must be text")
    if len(value) > 64:
        raise InvalidWorkflowId("a workflow id is 32 hexadecimal characters; this is far longer")
    candidate = value.strip().lower().replace("-", "")
    if not _WORKFLOW_ID.fullmatch(candidate):
        raise InvalidWorkflowId(
            "a workflow id is 32 hexadecimal characters (as shown when the workflow started)"
        )
    return candidate


class WorkflowStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    LOST = "lost"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"


@dataclass(slots=True)
class WorkflowRecord:
    """Everything the index knows about one workflow. Times are Unix seconds."""

    workflow_id: str
    command: str
    user_id: int
    options: dict[str, str] = field(default_factory=dict)
    user_name: str = ""
    guild_id: int | None = None
    channel_id: int | None = None
    ephemeral: bool = False
    status: WorkflowStatus = WorkflowStatus.RUNNING
    stage: str = ""
    progress: float = 0.0
    created_at: float = 0.0
    finished_at: float | None = None
    size_bytes: int | None = None
    delivery_state: DeliveryState = DeliveryState.PENDING
    delivered_via: str | None = None
    delivered_at: float | None = None
    error: str = ""
    path: str | None = None
    # Times the workflow was started again after the process running it died (runner.max_resumes).
    resumes: int = 0

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.created_at)

    @property
    def url(self) -> str:
        return self.options.get("url", "")

    @property
    def depth(self) -> str:
        return self.options.get("depth", "")


@dataclass(frozen=True, slots=True)
class RecordedStep:
    """A finished step of a workflow as the store holds it: a resumed workflow gets `value` back
    instead of running the step again. `value` is the JSON the step returned, as read back (a
    tuple is a list, configured secrets are masked); `recorded_at` is Unix seconds."""

    index: int
    name: str
    value: Any
    recorded_at: float


@dataclass(frozen=True, slots=True)
class ProgressState:
    """Where a running workflow is: a stage word, a fraction 0..1 and a line of detail."""

    stage: str
    progress: float  # 0..1
    detail: str = ""
    updated_at: float = 0.0

    def bar(self, width: int = 20) -> str:
        filled = round(max(0.0, min(1.0, self.progress)) * width)
        return "█" * filled + "░" * (width - filled)


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A finished workflow as the store holds it: its index row and its document as read back.

    `document` is the stored JSON document (``{"format", "workflow_id", "workflow", "result"}``)
    exactly as any later reader of the file gets it: NaN and infinities are null, sets and tuples
    are lists, what JSON cannot hold is text. Every view of a result (the first delivery, a
    hand-off, `/retrieve_results`, the CLI, the fanout's summary) renders this, never the dict the
    workflow returned, so a result looks the same however it reaches someone.
    """

    record: WorkflowRecord
    document: dict[str, Any]

    @property
    def result(self) -> dict[str, Any] | None:
        """The workflow's result inside the document (None when it stored none). A result that
        is not an object (a workflow returned a list) is shown under the key ``result``."""
        value = self.document.get("result")
        if value is None or isinstance(value, dict):
            return value
        return {"result": value}
