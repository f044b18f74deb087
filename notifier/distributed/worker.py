"""``notifier worker``: a process that runs workflows from the queue, with no gateway.

A worker opens what a bot opens minus the gateway: the PostgreSQL store, a REST-only Discord
client (`notifier.discord.rest_client`) for follow-ups, channel messages and DMs, the fanout on
the shared outbox (with the users' own channels of ``/notify``, their settings read from the
shared database, when ``user_notifications.enabled``), the workflows, and a `Runner`; then it
takes `run_workflow` jobs from the queue (`queue`), ``runner.max_concurrent`` at a time, each run
to its end by `Runner.run_job`.

Beside the jobs it keeps two duties (`_sweep_loop`), shared by every worker through an advisory
lock so that one does each at a time: jobs of workers whose heartbeat stopped are retried (their
workflows resume from the last recorded step on whichever worker takes them), and expired
interaction tokens are deleted. And it watches for cancels (`_cancel_loop`): ``/workflow
cancel`` on a gateway marks the row (``workflows.cancel_requested``); the worker running it stops
it like a local cancel.

Stopping (SIGTERM, `stop`): the queue stops handing out jobs; running workflows with recorded
steps get ``runner.shutdown_grace`` to reach a step boundary, stay running in the store and are
deferred again, so another worker resumes them at once; those without steps are interrupted, as
in the embedded mode.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import procrastinate
from loguru import logger

from ..config import Settings
from ..discord.delivery import send_notice_dm
from ..discord.io import DiscordIO
from ..discord.rest_budget import share_rest_budget
from ..discord.rest_client import rest_only_client
from ..errors import ConfigError, StoreError
from ..fanout.dispatch import Fanout
from ..fanout.plugin import PluginContext
from ..records import validate_workflow_id
from ..runner import JobTicket, Runner
from ..store.postgres import PostgresStore
from ..store.user_settings import UserSettingsStore, open_user_settings
from ..usernotify.channels import stored_result_loader
from ..usernotify.service import UserNotifications
from ..workflows import WorkflowSpec, bind_workflows, close_workflows, load_workflows
from . import tokens
from .queue import QUEUE, RUN_WORKFLOW, SWEEP_LOCK_KEY, build_app, defer_workflow

__all__ = ["Worker"]


class Worker:
    """One worker process's services and its loop (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        if settings.storage.backend != "postgres" or settings.storage.postgres_dsn is None:
            raise ConfigError(
                "storage.backend", "a worker needs backend: postgres (and storage.postgres_dsn)"
            )
        if settings.discord.token is None:
            raise ConfigError("discord.token", "a worker needs the bot's token to deliver")
        self.settings = settings
        self.queue = settings.distributed
        self._dsn = settings.storage.postgres_dsn.get_secret_value()
        self._stopping = asyncio.Event()
        self.store: PostgresStore | None = None
        self.runner: Runner | None = None
        self._app: procrastinate.App | None = None
        self._jobs: dict[str, int] = {}  # workflow id -> procrastinate job id, running here

    def stop(self) -> None:
        """Begin a graceful stop (the signal handler calls this)."""
        self._stopping.set()

    async def run(self) -> None:
        """Open everything, take jobs until `stop`, then stop gracefully and close."""
        settings = self.settings
        assert settings.discord.token is not None
        store = await PostgresStore.open(
            settings.storage, max_step_bytes=settings.runner.max_step_bytes
        )
        self.store = store
        client = None
        http = aiohttp.ClientSession()
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.fanout.executor_workers, thread_name_prefix="apprise"
        )
        fanout: Fanout | None = None
        user_settings: UserSettingsStore | None = None
        users: UserNotifications | None = None
        stop_sharing: Callable[[], Awaitable[None]] | None = None
        specs: dict[str, WorkflowSpec] = {}
        try:
            client = await rest_only_client(
                settings.discord.token.get_secret_value(), api_base=settings.discord.api_base
            )
            # Discord's 50 requests/s are the bot's, shared with the gateways and other workers.
            stop_sharing = await share_rest_budget(
                client,
                dsn=self._dsn,
                bot_token=settings.discord.token.get_secret_value(),
                discord=settings.discord,
            )
            io = DiscordIO(client)

            async def send_dm(
                user_id: int,
                content: str,
                embed: dict[str, Any] | None,
                *,
                nonce: str | None = None,
            ) -> None:
                await send_notice_dm(io, user_id, content, embed, nonce=nonce)

            context = PluginContext(
                http=http,
                executor=executor,
                send_dm=send_dm,
                discord_api_base=settings.discord.api_base,
            )
            # Users' own notices (/notify) for the workflows run here: their settings are in the
            # shared database, the notices go through the shared outbox like the operators'.
            if settings.user_notifications.enabled:
                user_settings = await open_user_settings(settings.storage)
                users = UserNotifications(
                    settings, user_settings, context, load_result=stored_result_loader(store)
                )
            fanout = await Fanout.open(
                settings, context, users=None if users is None else users.routes
            )
            if users is not None:
                users.bind_outbox(fanout.outbox)
            specs.update(await bind_workflows(load_workflows(settings), settings))
            self.runner = Runner(
                settings=settings, store=store, io=io, notify=fanout.emit, workflows=specs
            )
            await self._take_jobs()
        finally:
            if self.runner is not None:
                await self.runner.shutdown()
            await close_workflows(specs.values())
            if fanout is not None:
                await fanout.drain(timeout_s=settings.runner.shutdown_grace)
                await fanout.close()
            if users is not None:
                await users.close()
            if user_settings is not None:
                await user_settings.close()
            await store.close()
            if client is not None:
                await client.close()
            if stop_sharing is not None:
                await stop_sharing()
            await http.close()
            executor.shutdown(wait=False, cancel_futures=True)

    async def _take_jobs(self) -> None:
        app = build_app(self._dsn, pool_max_size=max(4, self.settings.runner.max_concurrent // 2))
        self._app = app

        @app.task(name=RUN_WORKFLOW, queue=QUEUE, pass_context=True)
        async def run_workflow(context: procrastinate.JobContext, workflow_id: str) -> None:
            await self._run_job(context, workflow_id)

        async with app.open_async():
            worker = asyncio.create_task(self._queue_worker(app), name="procrastinate-worker")
            duties = [
                asyncio.create_task(self._sweep_loop(app), name="worker-sweep"),
                asyncio.create_task(self._cancel_loop(), name="worker-cancels"),
            ]
            logger.info(
                "worker: taking workflow jobs (at most {} at once)",
                self.settings.runner.max_concurrent,
            )
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({worker, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for duty in duties:
                duty.cancel()
            # The runner first: running workflows reach a step boundary and their jobs end
            # (deferred again for another worker); then the queue's worker, which takes nothing
            # more and waits for the jobs still ending.
            if self.runner is not None:
                await self.runner.shutdown()
            worker.cancel()
            for task in (*duties, worker, stopping):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _queue_worker(self, app: procrastinate.App) -> None:
        """procrastinate's worker, started again if it stops on its own (its job fetch fails
        while PostgreSQL restarts; its heartbeat rides that out, `queue.SteadyHeartbeat`). Jobs
        it was running are not lost: their workflows resume through the stalled-job sweep.

        LISTEN/NOTIFY is off: its listener needs a standing connection, and one lost to a
        restart stops the whole worker; polling every ``distributed.fetch_polling`` seconds
        costs at most that much delay before a job starts, on workflows that run for minutes."""
        while True:
            try:
                await app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=self.settings.runner.max_concurrent,
                    wait=True,
                    install_signal_handlers=False,
                    listen_notify=False,
                    update_heartbeat_interval=self.queue.heartbeat,
                    stalled_worker_timeout=self.queue.stall_timeout,
                    fetch_job_polling_interval=self.queue.fetch_polling,
                    delete_jobs="successful",
                )
            except Exception as exc:  # noqa: BLE001 - started again below
                logger.warning("worker: the job queue stopped ({}); starting it again", exc)
            if self._stopping.is_set():
                return
            await asyncio.sleep(self.queue.fetch_polling)

    async def _run_job(self, context: procrastinate.JobContext, workflow_id: str) -> None:
        runner, store = self.runner, self.store
        assert runner is not None and store is not None
        workflow_id = validate_workflow_id(workflow_id)
        interaction = await store.database.run(
            "read an interaction token",
            lambda conn: tokens.read(conn, workflow_id, now=time.time()),
            retry=True,
        )
        ticket = JobTicket(
            workflow_id=workflow_id,
            attempt=context.job.attempts,
            token=interaction.token if interaction else None,
            interaction_created_at=interaction.created_at if interaction else None,
            **(
                {"attachment_limit_bytes": interaction.attachment_limit_bytes}
                if interaction
                else {}
            ),
        )
        job_id = context.job.id or 0
        held = await store.claim(workflow_id, job_id, lease_s=self.queue.stall_timeout)
        if held is not None:
            holder, left_s = held
            # Another runner's lease is live: a late job while it runs, or this job retried
            # just before the dead runner's lease ran out. One runner at a time: this job runs
            # nothing and comes back when that lease ends (then the workflow has concluded, and
            # the job ends at once, or its runner is gone, and the job claims it).
            logger.warning(
                "worker: workflow {} is run by job {} (its lease is live); job {} leaves it alone",
                workflow_id,
                holder,
                job_id,
            )
            assert self._app is not None
            await defer_workflow(self._app, workflow_id, delay_s=left_s + 0.5)
            return
        self._jobs[workflow_id] = job_id
        try:
            concluded = await runner.run_job(ticket)
        finally:
            self._jobs.pop(workflow_id, None)
        if concluded:
            with contextlib.suppress(StoreError):
                await store.database.run(
                    "forget an interaction token",
                    lambda conn: tokens.forget(conn, workflow_id),
                    retry=True,
                )
            return
        # Left running (this worker is stopping): another worker resumes it now.
        assert self._app is not None
        await store.release(workflow_id, job_id)
        await defer_workflow(self._app, workflow_id)
        logger.info("worker: workflow {} handed back to the queue", workflow_id)

    async def _sweep_loop(self, app: procrastinate.App) -> None:
        """Retry the jobs of dead workers and delete expired tokens, one worker at a time."""
        store = self.store
        assert store is not None
        while True:
            await asyncio.sleep(self.queue.sweep_interval)
            try:
                await self._sweep(app, store)
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                logger.warning("worker: sweep failed: {}", exc)

    async def _sweep(self, app: procrastinate.App, store: PostgresStore) -> None:
        async with store.database.connection() as conn, conn.transaction():
            cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [SWEEP_LOCK_KEY])
            row = await cursor.fetchone()
            if row is None or not row[0]:
                return  # another worker sweeps now
            stalled = await app.job_manager.get_stalled_jobs(
                queue=QUEUE, seconds_since_heartbeat=self.queue.stall_timeout
            )
            for job in stalled:
                logger.warning(
                    "worker: job {} ({}) belonged to a worker that stopped answering; retried",
                    job.id,
                    job.task_kwargs.get("workflow_id"),
                )
                await app.job_manager.retry_job(job)
            await tokens.sweep(conn, now=time.time())

    async def _cancel_loop(self) -> None:
        """Every second: renew the leases of the workflows this worker runs (`claim`), and
        cancel those whose cancel a gateway asked for."""
        store, runner = self.store, self.runner
        assert store is not None and runner is not None
        while True:
            await asyncio.sleep(1.0)
            ids = list(self._jobs)
            if not ids:
                continue
            try:
                await store.renew(ids, lease_s=self.queue.stall_timeout)
                wanted = await store.cancels_requested(ids)
            except StoreError as exc:
                logger.warning("worker: cannot read cancel requests: {}", exc)
                continue
            for workflow_id in wanted:
                await runner.cancel(workflow_id)
