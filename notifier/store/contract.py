"""`Store`: the narrow set of methods the rest of the bot uses, whatever holds the results.

Two backends implement it: `ResultStore` (the embedded default: result files, an SQLite index and
step files under ``storage.path``) and `PostgresStore` (``storage.backend: postgres``: one
PostgreSQL database that several processes share). The runner, the cogs and the CLI see only
this; a contract test suite runs the same behaviour against both (tests/store/contract).

Semantics every backend keeps (each method's docstring in `ResultStore` says more):
- `create` before a workflow runs (write-ahead); `finish` persists the outcome before any
  delivery and returns the stored document; idempotent for the same outcome, StoreError for
  another. A storage failure at finish does not raise: the result is held in memory and retried
  (`pending_writes`), so a result is never lost while the process lives.
- `record_step` returns once the step is durable; the same index under the same name replaces
  it, under another name it is a ValueError and the recorded one stays.
- Queries never show a row being purged; running workflows are never purged; a result not yet
  delivered is kept by retention unless an operator asks.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..records import RecordedStep, StoredResult, WorkflowRecord, WorkflowStatus
from .maintenance import ReconcileReport
from .query import ResultQuery

__all__ = ["Store"]


class Store(Protocol):
    """What the bot asks of its result store (see the module docstring)."""

    async def close(self) -> None: ...

    @property
    def pending_writes(self) -> tuple[str, ...]: ...

    async def create(self, record: WorkflowRecord) -> None: ...

    async def update_progress(self, workflow_id: str, *, stage: str, progress: float) -> None: ...

    async def record_step(self, workflow_id: str, index: int, name: str, value: object) -> None: ...

    async def steps(self, workflow_id: str) -> list[RecordedStep]: ...

    def adopt(self, record: WorkflowRecord) -> None: ...

    async def note_resume(self, workflow_id: str) -> int: ...

    async def resumable(self) -> list[WorkflowRecord]: ...

    async def finish(
        self,
        workflow_id: str,
        *,
        status: WorkflowStatus,
        result: dict[str, Any] | None,
        error: str = "",
        reason: str = "completed",
    ) -> StoredResult: ...

    async def mark_delivered(self, workflow_id: str, via: str) -> None: ...

    async def mark_undeliverable(self, workflow_id: str, reason: str) -> None: ...

    async def get(self, workflow_id: str) -> WorkflowRecord | None: ...

    async def read_result(self, workflow_id: str) -> dict[str, Any]: ...

    async def search(self, query: ResultQuery) -> list[WorkflowRecord]: ...

    async def url_search_ready(self) -> None: ...

    async def count(self, query: ResultQuery) -> int: ...

    async def recent_ids(
        self, user_id: int, prefix: str = "", limit: int = 25
    ) -> list[WorkflowRecord]: ...

    async def pending_delivery(self) -> list[WorkflowRecord]: ...

    async def running(self) -> list[WorkflowRecord]: ...

    async def durations(self, command: str, depth: str, limit: int) -> list[float]: ...

    async def reconcile(self) -> ReconcileReport: ...

    async def purge(
        self,
        *,
        older_than_s: float | None = None,
        before: float | None = None,
        include_undelivered: bool = False,
        dry_run: bool = False,
    ) -> int: ...
