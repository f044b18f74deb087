"""The runner of a gateway process (``notifier run --role gateway``): commands are stored and
queued, and workers run them.

A gateway holds the Discord gateway and answers every slash command within 3 s as the embedded
bot does (the cogs are the same); what differs is `start`: instead of running the workflow in
this process, `GatewayRunner` writes its row, the interaction's token and its job in ONE
PostgreSQL transaction (`PostgresStore.create(..., inside=...)`), so a command is either stored
and queued or, if anything fails, neither (the user is told it did not start). The user's limits
(``runner.max_per_user``, a workflow's own ``max_per_user``) are counted in the same transaction
under an advisory lock on the user, so two gateways (or two shards) cannot both let a user past
them. The user then sees "queued" until a worker takes the job and posts progress on the same
interaction.

Everything else reads the database: `/workflow status` (the row and its steps), `/results`,
`/retrieve_results`. `/workflow cancel` marks the row; the worker running it stops it at once
(its `_cancel_loop`), its outcome delivered as for a local cancel. A gateway runs no workflow, so
it recovers none at (re)connect: a worker that died is found by its heartbeat (`queue`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import procrastinate
from loguru import logger

from ..config import Settings
from ..discord.io import DiscordIO
from ..discord.messages import progress_message
from ..discord.session import InteractionLease, call_discord
from ..errors import DiscordCallFailed, StoreError
from ..records import ProgressState, WorkflowRecord
from ..runner import Runner, RunnerBusy, Slot, WorkflowRequest
from ..runner.runner import Notify, WorkflowBody
from ..store.postgres import PostgresStore, UserLimitReached
from ..workflows import WorkflowSpec
from . import tokens
from .queue import defer_workflow

if TYPE_CHECKING:
    from collections.abc import Mapping

    from psycopg import AsyncConnection

__all__ = ["GatewayRunner"]


class GatewayRunner(Runner):
    """A `Runner` whose workflows run on workers (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: PostgresStore,
        io: DiscordIO,
        notify: Notify,
        app: procrastinate.App,
        workflows: Mapping[str, WorkflowSpec] | None = None,
    ) -> None:
        super().__init__(settings=settings, store=store, io=io, notify=notify, workflows=workflows)
        self._postgres = store
        self._app = app

    async def _start(
        self,
        request: WorkflowRequest,
        body: WorkflowBody | WorkflowSpec,
        slot: Slot,
        estimate_s: float | None,
        workflow_id: str | None,
    ) -> WorkflowRecord:
        if not isinstance(body, WorkflowSpec):
            raise RuntimeError("a gateway queues workflows by name; a bare body cannot be queued")
        record = self._new_record(request, workflow_id)
        limits = self._settings.runner
        own_limit = self.workflow_settings(request.command).max_per_user

        async def inside(conn: AsyncConnection[Any]) -> None:
            # The limits' answer is read last: the row, the question, the token and the job go
            # to the server in one round trip (pipeline mode: `PostgresIndex.insert`).
            limits_verdict = await self._postgres.ask_user_limits(
                conn,
                request.user_id,
                command=request.command,
                max_per_user=limits.max_per_user,
                max_per_user_of_command=own_limit,
            )
            if request.token is not None:
                await tokens.put(
                    conn,
                    record.workflow_id,
                    tokens.StoredInteraction(
                        request.token,
                        request.interaction_created_at,
                        request.attachment_limit_bytes,
                    ),
                    ttl_s=self._settings.discord.interaction_ttl,
                )
            await defer_workflow(self._app, record.workflow_id, conn=conn)
            await limits_verdict()

        try:
            await self._postgres.create(record, inside=inside)
        except UserLimitReached as exc:
            raise RunnerBusy(self._limit_text(exc, request.command)) from None
        except StoreError as exc:
            logger.error("workflow {}: not queued: {}", record.workflow_id, exc)
            raise RunnerBusy(
                "The bot could not queue this workflow (its database is unavailable); nothing "
                "was started. Please try again in a minute."
            ) from None
        finally:
            slot.release()
        logger.info(
            "workflow {} queued: /{} by user {}", record.workflow_id, record.command, record.user_id
        )
        if request.token is not None:
            await self._show_queued(record, request)
        return record

    @staticmethod
    def _limit_text(exc: UserLimitReached, command: str) -> str:
        if exc.of_command:
            runs = "run" if exc.limit == 1 else "runs"
            return (
                f"You already have {exc.limit} /{command} {runs} going, the most /{command} "
                "allows per user at once; wait for one to finish or cancel one with "
                "`/workflow cancel`."
            )
        return (
            f"You already have {exc.limit} workflows running; wait for one to finish or cancel "
            "one with `/workflow cancel`."
        )

    async def _show_queued(self, record: WorkflowRecord, request: WorkflowRequest) -> None:
        """The deferred reply says "queued" with the id until a worker posts its progress."""
        assert request.token is not None
        token = request.token
        discord = self._settings.discord
        lease = InteractionLease(
            created_at=request.interaction_created_at,
            ttl_s=discord.interaction_ttl,
            safety_margin_s=discord.safety_margin,
        )
        message = progress_message(record, ProgressState("queued", 0.0, "", time.time()))
        try:
            await call_discord(
                lambda: self._io.edit_original(token, message), stage="start", lease=lease
            )
        except DiscordCallFailed as exc:
            logger.warning("workflow {}: queued status not shown: {}", record.workflow_id, exc)

    def _counted(self) -> int:
        """A gateway runs nothing itself: ``runner.max_concurrent`` is each worker's own bound
        (procrastinate's concurrency there), so queuing never waits for a place here."""
        return 0

    # -- what the cogs ask: the database answers -------------------------------------------------

    def is_running(self, workflow_id: str) -> bool:
        """A gateway cannot tell without the database: `cancel` decides."""
        return True

    async def cancel(self, workflow_id: str, *, reason: str = "cancelled") -> bool:
        """Ask the worker running the workflow to stop it; False if it is not running."""
        try:
            return await self._postgres.request_cancel(workflow_id)
        except StoreError as exc:
            logger.error("workflow {}: cancel not recorded: {}", workflow_id, exc)
            return False

    async def recover(self) -> tuple[int, int]:
        """Nothing to recover here: workers resume what a dead worker left (`queue`)."""
        return 0, 0
