"""The job queue of the distributed mode: procrastinate on the store's PostgreSQL database.

Why procrastinate (issue 18 weighed arq, SAQ, taskiq, Celery, dramatiq, Temporal, Hatchet, DBOS):
it is asyncio-native on psycopg 3, keeps its queue in the same database as our rows, so a job
is deferred in the transaction that writes its workflow (nothing is queued for a row that was
rolled back, and no row waits for a job that was never queued), and it finds a dead worker by
its heartbeat instead of a lease that an hour-long workflow would outlive. Its job results are
not stored: results stay ours (`notifier.store`).

Theory of operation
-------------------
- **One job per workflow**: task `notifier.run_workflow(workflow_id=...)` on queue
  `QUEUE`, deferred by the gateway (`defer_workflow`) on the connection of the transaction that
  inserts the workflow's row and its interaction token, with ``queueing_lock =`` the workflow id:
  a workflow is never queued twice.
- **Interaction tokens** live in ``notifier_interaction_tokens`` (`tokens`), never in a job's
  arguments (procrastinate's tables and logs show those): a worker reads the token when it takes
  the job, follows up on the interaction while the token lives, and the row is deleted when the
  workflow concludes or the token expires.
- **A dead worker**: its job stays ``doing``. Workers heartbeat every ``distributed.heartbeat`` s;
  each worker sweeps for stalled jobs every ``distributed.sweep_interval`` (one sweeper at a time: a
  transaction-level advisory lock; no procrastinate periodic task, whose own lock handling is the
  subject of procrastinate issue #1408) and retries the jobs of workers silent for
  ``distributed.stall_timeout``. The worker that takes the retried job resumes the workflow from its last
  recorded step (`Runner.run_job`). Worst case from a kill to the resume: stall_timeout +
  sweep_interval + fetch_polling.
- **A stopping worker** (SIGTERM) lets its workflows reach a step boundary within
  ``runner.shutdown_grace``, leaves them running with their steps, and defers each again: another
  worker takes it over at once instead of after the stall timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.schema import SchemaManager

from ..schema_migrations import Migration, MigrationSet, register

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = [
    "QUEUE",
    "QUEUE_SCHEMA",
    "RUN_WORKFLOW",
    "build_app",
    "defer_workflow",
]

QUEUE: Final = "notifier"
RUN_WORKFLOW: Final = "notifier.run_workflow"
# pg_try_advisory_xact_lock key of the stalled-job sweep: "sweeper!" in ASCII, as a bigint.
SWEEP_LOCK_KEY: Final = int.from_bytes(b"sweeper!", "big") & 0x7FFF_FFFF_FFFF_FFFF


_TOKENS_V1: Final = """
CREATE TABLE notifier_interaction_tokens (
    workflow_id            text COLLATE "C" PRIMARY KEY
                           REFERENCES workflows (workflow_id) ON DELETE CASCADE,
    token                  text             NOT NULL,
    created_at             double precision NOT NULL,
    expires_at             double precision NOT NULL,
    attachment_limit_bytes bigint           NOT NULL
);
CREATE INDEX notifier_interaction_tokens_expiry ON notifier_interaction_tokens (expires_at);
"""

# procrastinate's own schema as the installed version ships it (its `SchemaManager`), then our
# token table. A later procrastinate whose schema changes is a new step here (pyproject pins the
# minor version for that reason).
QUEUE_SCHEMA: Final = register(
    MigrationSet(
        "queue",
        (
            Migration(
                1,
                "procrastinate's job tables (version "
                f"{procrastinate.__version__}) and notifier_interaction_tokens",
                SchemaManager.get_schema() + _TOKENS_V1,
            ),
        ),
        requires=("store",),
    )
)


def build_app(dsn: str, *, pool_max_size: int = 10) -> procrastinate.App:
    """The procrastinate app on `dsn` with our task registered (its function is set per
    process: the worker's `Runner`). Open it with ``async with app.open_async():``."""
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn,
        min_size=1,
        max_size=pool_max_size,
        kwargs={"application_name": "notifier-queue"},
    )
    return procrastinate.App(connector=connector)


async def defer_workflow(
    app: procrastinate.App,
    workflow_id: str,
    *,
    conn: AsyncConnection[Any] | None = None,
    delay_s: float = 0.0,
) -> int | None:
    """Queue the workflow's job: on `conn`, inside the caller's transaction (queued only if it
    commits), or on the app's own pool. The job id, or None if a job for the workflow is queued
    already (on `conn` that also aborts the caller's transaction: a new workflow never has one,
    so the gateway's transaction cannot meet it)."""
    deferrer = app.configure_task(
        RUN_WORKFLOW,
        queue=QUEUE,
        queueing_lock=workflow_id,
        connection=conn,
        schedule_in={"seconds": delay_s} if delay_s > 0 else None,
    )
    try:
        job_id: int = await deferrer.defer_async(workflow_id=workflow_id)
    except AlreadyEnqueued:
        return None
    return job_id
