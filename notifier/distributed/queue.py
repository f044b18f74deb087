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
- **A lost database connection** (PostgreSQL restarting, a failover) under procrastinate's
  worker: its heartbeat is a side task, and procrastinate 3.10 stops watching its side tasks as
  soon as one of them returns, which its periodic deferrer does at once when no periodic task is
  registered (ours; procrastinate issue #1597). A heartbeat update that failed would end that
  task unseen: the worker would run on with no heartbeat, its live jobs retried by the sweep
  after ``stall_timeout``, and the error logged with its traceback only at shutdown. So the app's
  job manager is `SteadyHeartbeat`: an update that fails for want of the database is tried
  again until it is recorded. Where procrastinate does stop (its job fetch failing), the notifier
  worker starts it again (`Worker._queue_worker`); and `build_app` registers
  `database_unavailable` with the log bridge, so procrastinate's tracebacks of a lost database
  are one warning line each.
- **A stopping worker** (SIGTERM) lets its workflows reach a step boundary within
  ``runner.shutdown_grace``, leaves them running with their steps, and defers each again: another
  worker takes it over at once instead of after the stall timeout.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import procrastinate
import psycopg
from loguru import logger
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException
from procrastinate.manager import JobManager
from procrastinate.schema import SchemaManager

from ..logs import register_outage
from ..schema_migrations import Migration, MigrationSet, register

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = [
    "QUEUE",
    "QUEUE_SCHEMA",
    "RUN_WORKFLOW",
    "SteadyHeartbeat",
    "build_app",
    "database_unavailable",
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


def database_unavailable(error: BaseException) -> str | None:
    """Why `error` is PostgreSQL being out of reach (its chain holds a psycopg
    ``OperationalError``: a refused or terminated connection, a server shutting down), in the
    server's first line of words; None for anything else, which stays a traceback."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, psycopg.OperationalError):
            words = str(current).strip().splitlines()
            return (
                f"PostgreSQL unreachable ({words[0].strip() if words else type(current).__name__})"
            )
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class SteadyHeartbeat(JobManager):
    """procrastinate's job manager whose worker heartbeat outlasts a database outage: an update
    that fails for want of PostgreSQL (`database_unavailable`) is tried again every `retry_s`
    (each try also waits for the pool, up to its timeout) until it is recorded, instead of ending
    the worker's heartbeat task for good (see the module docstring). Other errors are raised."""

    def __init__(self, connector: procrastinate.PsycopgConnector, *, retry_s: float) -> None:
        super().__init__(connector)
        self.retry_s = retry_s

    async def update_heartbeat(self, worker_id: int) -> None:
        failed = 0
        while True:
            try:
                await super().update_heartbeat(worker_id)
            except ConnectorException as exc:
                reason = database_unavailable(exc)
                if reason is None:
                    raise
                if not failed:
                    logger.warning(
                        "queue: heartbeat of worker {} not recorded: {}; trying again every {} s",
                        worker_id,
                        reason,
                        self.retry_s,
                    )
                failed += 1
                await asyncio.sleep(self.retry_s)
                continue
            if failed:
                logger.info(
                    "queue: heartbeat of worker {} recorded again after {} failed tries",
                    worker_id,
                    failed,
                )
            return


def build_app(
    dsn: str, *, pool_max_size: int = 10, heartbeat_retry_s: float = 1.0
) -> procrastinate.App:
    """The procrastinate app on `dsn` with our task registered (its function is set per
    process: the worker's `Runner`). Open it with ``async with app.open_async():``. Its worker's
    heartbeat rides out a lost database (`SteadyHeartbeat`), and its logs of one are a warning
    line each (`database_unavailable`)."""
    register_outage(database_unavailable)
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn,
        min_size=1,
        max_size=pool_max_size,
        kwargs={"application_name": "notifier-queue"},
    )
    app = procrastinate.App(connector=connector)
    app.job_manager = SteadyHeartbeat(connector, retry_s=heartbeat_retry_s)
    return app


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
