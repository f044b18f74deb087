"""Background workflows: start, track, report, persist, deliver, cancel, shut down.

The runner is the only place that knows the order of things: the workflow is stored as running
before it starts; its result is written to the store (write-ahead) before any delivery is tried;
delivery goes down the ladder; the fanout hears about every step. The workflow body itself only
reports progress and returns a dict; it never sees Discord.

However a workflow ends (completed, failed, cancelled, interrupted by a shutdown, or found
running after a crash), it takes one path: persist, notify, deliver, record the delivery (see
"the outcome path" below). What is told and shown is drawn from the stored document the store
hands back, never from the dict the workflow returned, so the first delivery looks exactly like
every later read of the result.

Resuming. A workflow started from its spec gets a Context whose steps (`ctx.step`) are recorded
in the store (`journal.StoreJournal`). One found running after a restart (`recover`) whose
workflow is resumable and has recorded steps runs again (within `runner.max_concurrent`: one
that finds the runner full waits for a place), replaying them, delivered through the
ladder's channel and DM rungs (its interaction token died with the process), its user told once
that it resumed; past `runner.max_resumes` it fails instead, naming the step it died in. At
shutdown such a workflow is cancelled but left running in the store, to resume on the next
start; one without recorded steps is interrupted, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from aiolimiter import AsyncLimiter
from loguru import logger

from ..config import Settings, WorkflowSettings
from ..discord import codes
from ..discord.delivery import Delivery, DeliveryTarget, Rung
from ..discord.embeds import render_result
from ..discord.io import DiscordIO, OutgoingMessage
from ..discord.messages import (
    error_message,
    handoff_message,
    interrupted_message,
    progress_message,
    timeout_warning_message,
)
from ..discord.session import InteractionLease
from ..errors import NotifierError, StoreError
from ..events import Event, Notice
from ..metrics import WORKFLOW_DURATION, WORKFLOW_RESUMES, WORKFLOWS_RUNNING
from ..records import (
    ProgressState,
    RecordedStep,
    StoredResult,
    WorkflowRecord,
    WorkflowStatus,
    new_workflow_id,
)
from ..store import ResultNotStorable, ResultQuery, Store, WorkflowExists
from ..workflows.api import Context
from ..workflows.contract import ReportProgress, StepJournal, WorkflowSpec
from .journal import StepProbe, StepReached, StoreJournal, steps_done_text
from .progress import ProgressThrottle

__all__ = [
    "EstimateSource",
    "JobTicket",
    "Runner",
    "RunnerBusy",
    "Slot",
    "StepsState",
    "WorkflowBody",
    "WorkflowRequest",
    "results_channel",
]

Report = Callable[..., None]
WorkflowBody = Callable[[Mapping[str, str], Report], Awaitable[dict[str, Any]]]
# A body as the runner calls it: the options, the progress callback, the run's step journal.
_JournaledBody = Callable[
    [Mapping[str, str], Report, StepJournal | None], Awaitable[dict[str, Any]]
]
Notify = Callable[[Notice], Awaitable[None]]
# An estimate as configured or declared: seconds, or seconds per option value ({deep: 900}).
EstimateSource = float | Mapping[str, float] | None


_STOPPED = "the bot stopped while this workflow ran"
# How long the give-up probe may replay a workflow to find the step it died in.
_PROBE_LIMIT_S = 10.0
# Completed runs looked through for the history of a workflow whose estimate an option other
# than `depth` decides (the index has no column for it).
_HISTORY_WINDOW = 1000

_OUTCOME_EVENTS: dict[WorkflowStatus, Event] = {
    WorkflowStatus.COMPLETED: Event.COMPLETED,
    WorkflowStatus.INTERRUPTED: Event.INTERRUPTED,
}


class RunnerBusy(NotifierError):
    """A concurrency limit is reached; the message says which, for the user."""


class Slot:
    """A place among the running workflows, held from the capacity check until the workflow
    counts as running, or until the start fails.

    Taking a slot is the check (`Runner.reserve`, with no await between counting and taking), so
    commands arriving together cannot all pass the check before any of them starts: without it,
    twelve simultaneous commands from one user with ``max_per_user: 3`` started twelve, because
    validation, the estimate and the store's row are awaited before a workflow is running.
    Use it as a context manager: leaving the block gives the place back unless the workflow took
    it (`Runner.start`).

    `workflow` is the workflow the place is for, once known: its own `max_per_user`
    (``workflows.<name>.max_per_user``) is checked when it is set, in the same step as the place
    among that workflow's runs is taken (by `reserve`, or by `start` for a slot reserved without
    a name).
    """

    __slots__ = ("_give_back", "held", "user_id", "workflow")

    def __init__(
        self, user_id: int, give_back: Callable[[Slot], None], workflow: str | None = None
    ) -> None:
        self.user_id = user_id
        self.workflow = workflow
        self.held = True
        self._give_back = give_back

    def release(self) -> None:
        if self.held:
            self.held = False
            self._give_back(self)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(frozen=True, slots=True)
class WorkflowRequest:
    """What the runner needs from a slash command, as plain values (no nextcord objects)."""

    command: str
    options: dict[str, str]
    user_id: int
    user_name: str
    guild_id: int | None
    channel_id: int | None
    ephemeral: bool
    token: str | None
    interaction_created_at: float
    attachment_limit_bytes: int


@dataclass(frozen=True, slots=True)
class JobTicket:
    """What a worker gets with a job (distributed mode): the workflow to run, how often its
    job ran before (`attempt`), and the interaction the gateway answered, if its token was
    stored: follow-ups go there while it lives (never logged: the worker masks it)."""

    workflow_id: str
    attempt: int = 0
    token: str | None = None
    interaction_created_at: float | None = None
    attachment_limit_bytes: int = codes.ATTACHMENT_SIZE_DEFAULT_BYTES


@dataclass(frozen=True, slots=True)
class StepsState:
    """A running workflow's steps as the user sees them: `names` of the finished ones (replayed
    and new), the one `running` now (None between steps), and how often it was `resumes`d."""

    names: tuple[str, ...]
    running: str | None
    resumes: int


@dataclass(slots=True)
class _Running:
    record: WorkflowRecord
    task: asyncio.Task[None]
    delivery: Delivery
    throttle: ProgressThrottle
    started_monotonic: float
    journal: StoreJournal | None = None
    # Left running in the store at shutdown (to resume) once it has a recorded step.
    resumable: bool = False
    cancel_reason: str | None = None
    state: ProgressState | None = None
    helpers: list[asyncio.Task[Any]] = field(default_factory=list)
    # Set the moment the body has ended: from then on the outcome is being stored and
    # delivered, and a cancel must not cut that short (nor call a stored result "cancelled").
    concluding: bool = False


class Runner:
    """Runs workflows as background tasks and sees each one through to a delivered result."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        io: DiscordIO,
        notify: Notify,
        workflows: Mapping[str, WorkflowSpec] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._io = io
        self._notify = notify
        # The workflows by command name (a live mapping): what a resumed workflow runs.
        self._workflows: Mapping[str, WorkflowSpec] = workflows if workflows is not None else {}
        self._running: dict[str, _Running] = {}
        self._reserved: Counter[int] = Counter()  # slots taken, per user, not yet running
        # The same slots per (user, workflow), for the workflows' own max_per_user.
        self._reserved_for: Counter[tuple[int, str]] = Counter()
        self._closing = False
        # Workflows to resume that found the runner full (runner.max_concurrent): resumed, oldest
        # first, as running ones end. `_resuming`: taken from there, not yet running.
        self._deferred: dict[str, tuple[WorkflowRecord, WorkflowSpec, list[RecordedStep]]] = {}
        self._resuming: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        # One budget for every workflow's bot-token progress edits (see notifier.runner.progress). A
        # limiter's burst must hold one edit, so a rate under 1/s is one edit per 1/rate seconds.
        rate = settings.progress.bot_edits_per_second
        burst = max(1.0, rate)
        self._bot_edits = AsyncLimiter(burst, burst / rate)

    # -- queries -------------------------------------------------------------------------------

    def running_for(self, user_id: int, workflow: str | None = None) -> int:
        """Workflows of `user_id` running now (only those of `workflow`, if given)."""
        return sum(
            1
            for r in self._running.values()
            if r.record.user_id == user_id and (workflow is None or r.record.command == workflow)
        )

    def _counted(self) -> int:
        return len(self._running) + self._reserved.total() + len(self._resuming)

    def is_running(self, workflow_id: str) -> bool:
        return workflow_id in self._running

    def live_state(self, workflow_id: str) -> tuple[WorkflowRecord, ProgressState | None] | None:
        """A running workflow's record and its latest progress (fresher than the store's)."""
        running = self._running.get(workflow_id)
        if running is None:
            return None
        return running.record, running.throttle.latest or running.state

    def steps_state(self, workflow_id: str) -> StepsState | None:
        """A running workflow's steps (finished, running now) and resumes; None if it is not
        running here."""
        running = self._running.get(workflow_id)
        if running is None:
            return None
        journal = running.journal
        return StepsState(
            names=tuple(journal.names) if journal else (),
            running=journal.running_step if journal else None,
            resumes=running.record.resumes,
        )

    def workflow_settings(self, command: str) -> WorkflowSettings:
        """The operator's settings for one workflow (`workflows.<command>` in config.yaml)."""
        return self._settings.workflows.settings_for(command)

    async def estimate_s(
        self,
        command: str,
        options: Mapping[str, str] | str = "",
        *,
        default_s: EstimateSource = None,
    ) -> float | None:
        """How long a run of `command` with `options` is expected to take, for the warning.

        Once there is history, the median of the last `warnings.history` completed runs alike
        (same value of the option that decides the estimate below; with no deciding option, the
        same `depth` option, which the store indexes). Before that, the first of these that has
        a number for these options: `workflows.<command>.estimate_s` (the operator's), then
        `warnings.default_estimates[<command>]` (the older per-command table, kept as a
        fallback), then `default_s` (the workflow's own, `@workflow(estimate_s=...)`, passed by
        the caller). Each is one number or a map from an option's value to seconds; for a map
        the first option (in the command's order) whose value is a key decides.

        A bare string for `options` is the `depth` option (the older call form).
        """
        chosen = {"depth": options} if isinstance(options, str) else dict(options)
        warnings = self._settings.warnings
        fallback: float | None = None
        deciding: tuple[str, str] | None = None
        for source in (
            self.workflow_settings(command).estimate_s,
            warnings.default_estimates.get(command),
            default_s,
        ):
            fallback, deciding = _estimate_from(source, chosen)
            if fallback is not None:
                break
        history = await self._history(command, chosen, deciding, warnings.history)
        if history:
            return float(statistics.median(history))
        return fallback

    async def _history(
        self,
        command: str,
        options: Mapping[str, str],
        deciding: tuple[str, str] | None,
        limit: int,
    ) -> list[float]:
        """Durations of the latest completed runs like this one, newest first."""
        if deciding is None or deciding[0] == "depth":
            return await self._store.durations(command, options.get("depth", ""), limit)
        # Another option decides: the index has no column for it, so look through the latest
        # completed runs of the command (a bounded window) for those with the same value.
        key, value = deciding
        window = ResultQuery(
            command=command,
            status=WorkflowStatus.COMPLETED,
            limit=min(limit * 10, _HISTORY_WINDOW),
        )
        durations = [
            record.duration_s
            for record in await self._store.search(window)
            if record.options.get(key) == value and record.duration_s is not None
        ]
        return durations[:limit]

    # -- start ---------------------------------------------------------------------------------

    def reserve(self, user_id: int, workflow: str | None = None) -> Slot:
        """Take a place for a workflow of `user_id`, or raise RunnerBusy saying which limit is
        reached. Workflows starting count like running ones (see `Slot`).

        With `workflow` (the command's name), that workflow's own `max_per_user` is checked and
        its place taken in the same step; without it, `start` does that for the slot.
        """
        limits = self._settings.runner
        if self._closing:
            raise RunnerBusy("The bot is shutting down; please try again in a minute.")
        if self._counted() >= limits.max_concurrent:
            raise RunnerBusy(
                f"{limits.max_concurrent} workflows are already running; please try again later."
            )
        if self.running_for(user_id) + self._reserved[user_id] >= limits.max_per_user:
            raise RunnerBusy(
                f"You already have {limits.max_per_user} workflows running; wait for one to "
                "finish or cancel one with `/workflow cancel`."
            )
        if workflow is not None:
            self._check_workflow_limit(user_id, workflow)
        self._reserved[user_id] += 1
        slot = Slot(user_id, self._give_back)
        if workflow is not None:
            self._reserved_for[(user_id, workflow)] += 1
            slot.workflow = workflow
        return slot

    def _check_workflow_limit(self, user_id: int, workflow: str) -> None:
        """RunnerBusy if `user_id` has `workflows.<workflow>.max_per_user` of it already."""
        limit = self.workflow_settings(workflow).max_per_user
        if limit is None:
            return
        if self.running_for(user_id, workflow) + self._reserved_for[(user_id, workflow)] >= limit:
            runs = "run" if limit == 1 else "runs"
            raise RunnerBusy(
                f"You already have {limit} /{workflow} {runs} going, the most /{workflow} allows "
                "per user at once; wait for one to finish or cancel one with `/workflow cancel`."
            )

    def _bind(self, slot: Slot, workflow: str) -> None:
        """Give a slot reserved without a workflow its workflow: check that workflow's limit and
        take its place, in one step (no await), or raise RunnerBusy."""
        if slot.workflow is not None:
            if slot.workflow != workflow:
                raise RuntimeError(f"this slot was reserved for /{slot.workflow}, not /{workflow}")
            return
        self._check_workflow_limit(slot.user_id, workflow)
        self._reserved_for[(slot.user_id, workflow)] += 1
        slot.workflow = workflow

    def _give_back(self, slot: Slot) -> None:
        self._reserved[slot.user_id] -= 1
        if self._reserved[slot.user_id] <= 0:
            del self._reserved[slot.user_id]
        if slot.workflow is not None:
            key = (slot.user_id, slot.workflow)
            self._reserved_for[key] -= 1
            if self._reserved_for[key] <= 0:
                del self._reserved_for[key]

    async def start(
        self,
        request: WorkflowRequest,
        body: WorkflowBody | WorkflowSpec,
        *,
        estimate_s: float | None = None,
        workflow_id: str | None = None,
        slot: Slot | None = None,
    ) -> WorkflowRecord:
        """Store the workflow as running and start it in the background. Returns at once.

        `slot` is the place `reserve` gave the caller; without one, one is taken here (RunnerBusy
        when the limits are reached). A slot reserved without the workflow's name gets it here,
        before anything is awaited, so the workflow's own `max_per_user` holds for commands
        arriving together too (RunnerBusy if it is reached). The workflow takes the slot over
        once it runs; a failed start gives it back.

        `body` is the workflow's spec (its run gets a Context whose steps are recorded, and it
        resumes after a restart if the spec is resumable) or a bare body (never resumed).
        """
        with slot or self.reserve(request.user_id, request.command) as held:
            if held.held:
                self._bind(held, request.command)
            return await self._start(request, body, held, estimate_s, workflow_id)

    async def _start(
        self,
        request: WorkflowRequest,
        body: WorkflowBody | WorkflowSpec,
        slot: Slot,
        estimate_s: float | None,
        workflow_id: str | None,
    ) -> WorkflowRecord:
        if not slot.held:
            raise RuntimeError("this slot was given back already; reserve another")
        if self._closing:
            raise RunnerBusy("The bot is shutting down; please try again in a minute.")
        record = self._new_record(request, workflow_id)
        try:
            await self._store.create(record)
        except WorkflowExists:
            raise
        except StoreError as exc:
            # The index could not take the row (a full disk, say). The store keeps the running
            # record in memory, so the workflow runs on and `finish` persists its result (or holds
            # it and retries the write): refusing here would lose the work, not protect it.
            logger.warning(
                "workflow {}: starts without an index row ({}); its result is kept all the same",
                record.workflow_id,
                exc,
            )
        discord = self._settings.discord
        delivery = self._delivery(
            record,
            token=request.token,
            interaction_created_at=request.interaction_created_at,
            attachment_limit_bytes=request.attachment_limit_bytes,
        )
        target = delivery.target
        journal = StoreJournal(self._store, record.workflow_id)
        running = self._launch(record, body, delivery, journal)
        slot.release()  # the running workflow counts now, in the same step
        # The first status shows the workflow id at once; later edits are throttled.
        running.throttle.report(ProgressState("starting", 0.0, "", time.time()))
        if estimate_s is not None and estimate_s > self._settings.warnings.threshold:
            warning = timeout_warning_message(
                record,
                estimate_s=estimate_s,
                ttl_s=discord.interaction_ttl,
                ephemeral=request.ephemeral,
                channel_id=target.channel_id,
            )
            running.helpers.append(
                asyncio.create_task(delivery.whisper(warning, stage="start"), name="warning")
            )
        await self._emit(self._notice(record, Event.STARTED, estimate_s=estimate_s))
        logger.info(
            "workflow {} started: /{} by user {} (estimate {})",
            record.workflow_id,
            record.command,
            record.user_id,
            "-" if estimate_s is None else f"{estimate_s:.0f}s",
        )
        return record

    @staticmethod
    def _new_record(request: WorkflowRequest, workflow_id: str | None) -> WorkflowRecord:
        """The running workflow's record for a command, as `start` stores it."""
        return WorkflowRecord(
            workflow_id=workflow_id or new_workflow_id(),
            command=request.command,
            user_id=request.user_id,
            user_name=request.user_name,
            options=dict(request.options),
            guild_id=request.guild_id,
            channel_id=request.channel_id,
            ephemeral=request.ephemeral,
            created_at=time.time(),
        )

    def _ladder_events(self, record: WorkflowRecord) -> Callable[[Event, str], Awaitable[None]]:
        async def on_ladder_event(event: Event, detail: str) -> None:
            await self._emit(self._notice(record, event, rung=detail, error=detail))

        return on_ladder_event

    def _launch(
        self,
        record: WorkflowRecord,
        body: WorkflowBody | WorkflowSpec,
        delivery: Delivery,
        journal: StoreJournal,
    ) -> _Running:
        """Start the workflow's task with its progress path (shown, stored, told) and its
        hand-off watch, and count it as running. No await: nothing gets in between."""

        async def show(state: ProgressState) -> None:
            await delivery.show_progress(
                progress_message(record, state), self._handoff_builder(record)
            )
            await self._store.update_progress(
                record.workflow_id, stage=state.stage, progress=state.progress
            )
            await self._emit(
                self._notice(record, Event.PROGRESS, stage=state.stage, progress=state.progress)
            )

        throttle = ProgressThrottle(
            show,
            min_interval_s=self._settings.progress.min_interval,
            budget=self._bot_edits,
            needs_budget=lambda: delivery.rung in (Rung.CHANNEL, Rung.DM),
        )
        is_spec = isinstance(body, WorkflowSpec)
        run = _journaled(record, body)
        task = asyncio.create_task(
            self._run(record, run, journal if is_spec else None),
            name=f"workflow-{record.workflow_id}",
        )
        running = _Running(
            record=record,
            task=task,
            delivery=delivery,
            throttle=throttle,
            started_monotonic=time.monotonic(),
            journal=journal if is_spec else None,
            resumable=is_spec and cast(WorkflowSpec, body).resumable,
        )
        running.helpers.append(
            asyncio.create_task(delivery.watch_handoff(self._handoff_builder(record)))
        )
        self._running[record.workflow_id] = running
        WORKFLOWS_RUNNING.set(len(self._running))
        return running

    def _handoff_builder(self, record: WorkflowRecord) -> Callable[[Rung], OutgoingMessage]:
        channel_id = self._results_channel(record)

        def build(rung: Rung) -> OutgoingMessage:
            return handoff_message(record, rung=rung.value, channel_id=channel_id)

        return build

    def _results_channel(self, record: WorkflowRecord) -> int | None:
        """Where the channel rung posts for this workflow (see `results_channel`)."""
        return results_channel(
            self.workflow_settings(record.command).results_channel_id,
            guild_id=record.guild_id,
            channel_id=record.channel_id,
            ephemeral=record.ephemeral,
        )

    # -- the workflow's life -------------------------------------------------------------------

    async def _run(
        self, record: WorkflowRecord, body: _JournaledBody, journal: StepJournal | None
    ) -> None:
        running = self._running[record.workflow_id]

        def report(*, stage: str, progress: float, detail: str = "") -> None:
            state = ProgressState(stage, max(0.0, min(1.0, progress)), detail, time.time())
            running.state = state
            running.throttle.report(state)

        status = WorkflowStatus.COMPLETED
        result: dict[str, Any] | None = None
        error = ""
        try:
            result = await body(dict(record.options), report, journal)
        except asyncio.CancelledError:
            if running.cancel_reason is None:
                raise
            if running.cancel_reason == "shutdown" and self._resumes_later(running):
                await self._leave_running(running)
                return
            status = (
                WorkflowStatus.INTERRUPTED
                if running.cancel_reason == "shutdown"
                else WorkflowStatus.CANCELLED
            )
            error = running.cancel_reason
        except NotifierError as exc:
            status, error = WorkflowStatus.FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - the workflow's own bug; logged, reported, stored
            logger.opt(exception=exc).error("workflow {} crashed", record.workflow_id)
            status, error = WorkflowStatus.FAILED, f"internal error ({type(exc).__name__})"
        running.concluding = True  # no await since the body ended: no cancel got in between
        try:
            await self._conclude(running, status, result, error)
        except StoreError as exc:
            # The store refused the outcome (another result is already stored under this id, or
            # the row vanished): nothing can be delivered that the store does not hold. Never
            # silent: the log says it, and operators hear it through the fanout.
            logger.error(
                "workflow {}: its outcome was not stored, so it is not delivered: {}",
                record.workflow_id,
                exc,
            )
            await self._emit(self._notice(record, Event.STORAGE_ERROR, error=str(exc)))
        finally:
            for helper in running.helpers:
                helper.cancel()
            self._running.pop(record.workflow_id, None)
            WORKFLOWS_RUNNING.set(len(self._running))
            self._resume_deferred()

    def _resumes_later(self, running: _Running) -> bool:
        """Whether a workflow stopped by the shutdown stays running in the store, to resume."""
        return running.resumable and running.journal is not None and running.journal.done > 0

    async def _leave_running(self, running: _Running) -> None:
        """Shutdown of a workflow that resumes on the next start: nothing is concluded (its row
        stays running, with its steps); its progress path is closed; it is no longer ours."""
        record = running.record
        await running.throttle.close()
        for helper in running.helpers:
            helper.cancel()
        self._running.pop(record.workflow_id, None)
        WORKFLOWS_RUNNING.set(len(self._running))
        steps = running.journal.done if running.journal else 0
        logger.info(
            "workflow {}: stopped by the shutdown after {} recorded step(s); it resumes on the "
            "next start",
            record.workflow_id,
            steps,
        )

    # -- the outcome path ----------------------------------------------------------------------
    #
    # Every workflow that ends goes through the same steps, in this order: persist (the store
    # writes the result and hands back the stored document), notify (the fanout hears the
    # outcome), deliver (the ladder carries the message drawn from the stored document), record
    # the delivery. A workflow of this process enters at persist (`_conclude`); one a dead
    # process left running enters there too, as interrupted (`recover`); a result stored but
    # never delivered, by this process or an earlier one, enters at deliver (`recover`).

    async def _conclude(
        self,
        running: _Running,
        status: WorkflowStatus,
        result: dict[str, Any] | None,
        error: str,
    ) -> None:
        """A workflow of this process ended: completed, failed, cancelled or interrupted."""
        record = running.record
        duration_s = time.monotonic() - running.started_monotonic
        state = running.throttle.latest or running.state
        stage, progress = (state.stage, state.progress) if state else ("", None)
        stored = await self._persist(record, status, result, error, stage=stage, progress=progress)
        WORKFLOW_DURATION.labels(command=record.command).observe(duration_s)
        # The stored status: a result the store could not hold at all was stored as failed.
        if stored.record.status is WorkflowStatus.COMPLETED and running.delivery.shows_status:
            await running.throttle.finish(ProgressState("done", 1.0, "", time.time()))
        else:
            # Failed, cancelled, or no status message was ever posted (a bot-token status still
            # waiting for the shared edit budget): the result or error message says it all, and
            # posting a status first would only spend one more request of Discord's 50/s.
            await running.throttle.close()
        await self._notify_outcome(stored, duration_s=duration_s, stage=stage, progress=progress)
        await self._deliver_outcome(stored, running.delivery, give_up=True)

    async def _persist(
        self,
        record: WorkflowRecord,
        status: WorkflowStatus,
        result: dict[str, Any] | None,
        error: str,
        *,
        stage: str,
        progress: float | None,
    ) -> StoredResult:
        """Write-ahead: the outcome is durable before anything is told or delivered. A workflow
        that did not complete stores its error and where it stopped beside any partial result."""
        document = result
        if status is not WorkflowStatus.COMPLETED:
            document = {"error": error, "last_stage": stage, **(result or {})}
            if progress is not None:
                document["last_progress"] = progress
        try:
            return await self._store.finish(
                record.workflow_id,
                status=status,
                result=document,
                error=error,
                reason=status.value,
            )
        except ResultNotStorable as exc:
            # The workflow's own bug (a circular reference, say): its user still hears how it
            # ended, as a failure that names the cause, instead of a "thinking" message forever.
            logger.error("workflow {}: {}; stored as failed", record.workflow_id, exc)
            failure = f"internal error ({exc})"[:500]
            return await self._persist(
                record,
                WorkflowStatus.FAILED,
                None,
                failure,
                stage=stage,
                progress=progress,
            )

    async def _notify_outcome(
        self, stored: StoredResult, *, duration_s: float | None, stage: str, progress: float | None
    ) -> None:
        """The fanout hears the outcome; its summary is drawn from the stored result."""
        record = stored.record
        await self._emit(
            self._notice(
                record,
                _OUTCOME_EVENTS.get(record.status, Event.FAILED),
                duration_s=duration_s,
                summary=_summary(stored.result),
                error=record.error,
                stage=stage,
                progress=progress,
            )
        )

    async def _deliver_outcome(
        self, stored: StoredResult, delivery: Delivery, *, give_up: bool
    ) -> Rung:
        """Carry the outcome down the ladder and record where it went. With `give_up`, a result
        no rung could carry is marked undeliverable and operators are told (`persisted`);
        without it (at recovery), it stays pending and the next (re)connect tries again."""
        record = stored.record
        handoff = self._handoff_builder(record)
        if record.status is WorkflowStatus.CANCELLED:
            rung = await delivery.deliver(
                error_message(record, "Cancelled on request."), stage="error"
            )
        elif record.status is WorkflowStatus.INTERRUPTED:
            rung = await delivery.deliver(interrupted_message(stored), stage="error")
        elif record.status is WorkflowStatus.FAILED:
            rung = await delivery.deliver(
                error_message(record, record.error or "The workflow failed."),
                stage="error",
                handoff_notice=handoff,
            )
        else:
            rendered = render_result(
                stored, attachment_limit_bytes=delivery.target.attachment_limit_bytes
            )
            summary = render_result(stored, attachment_limit_bytes=0)
            message = OutgoingMessage(
                content=rendered.content or None, embeds=rendered.embeds, files=rendered.files
            )
            fallback = OutgoingMessage(content=summary.content or None, embeds=summary.embeds)
            rung = await delivery.deliver(message, fallback=fallback, handoff_notice=handoff)
        if rung is not Rung.NONE:
            await self._store.mark_delivered(record.workflow_id, rung.value)
        elif give_up:
            await self._store.mark_undeliverable(record.workflow_id, "every rung failed")
            await self._emit(self._notice(record, Event.PERSISTED, rung=rung.value))
        return rung

    def _ladder_for(self, record: WorkflowRecord) -> Delivery:
        """A ladder for a workflow that no interaction token reaches any more (recovery)."""
        return Delivery(self._io, self._target_for(record), None)

    def _target_for(self, record: WorkflowRecord) -> DeliveryTarget:
        return DeliveryTarget(
            workflow_id=record.workflow_id,
            user_id=record.user_id,
            channel_id=self._results_channel(record),
            ephemeral=record.ephemeral,
        )

    # -- control -------------------------------------------------------------------------------

    async def cancel(self, workflow_id: str, *, reason: str = "cancelled") -> bool:
        """Stop a running workflow; False if it is not running any more, or if its body has
        already ended and its outcome is being stored and delivered (then it goes on)."""
        running = self._running.get(workflow_id)
        if running is None or running.task.done() or running.concluding:
            return False
        running.cancel_reason = reason
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.task
        return True

    async def _stop(self, workflow_id: str) -> None:
        """At shutdown: interrupt a workflow, or let one whose outcome is being delivered end.
        A resumable workflow gets `runner.shutdown_grace` to reach its next step boundary (the
        step it is in is recorded, not thrown away) before it is cancelled."""
        running = self._running.get(workflow_id)
        if running is None:
            return
        if running.resumable and running.journal is not None and not running.concluding:
            running.cancel_reason = "shutdown"
            running.journal.stop_requested = True
            grace_s = self._settings.runner.shutdown_grace
            await asyncio.wait({running.task}, timeout=grace_s)
            if running.task.done():
                return
        if not await self.cancel(workflow_id, reason="shutdown"):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(running.task)

    async def shutdown(self) -> None:
        """Stop running workflows: those that resume on the next start (resumable, with a
        recorded step) are left running in the store; the others are marked interrupted and
        their users told."""
        self._closing = True
        ids = list(self._running)
        if ids:
            logger.info("shutting down: interrupting {} running workflow(s)", len(ids))
        grace = self._settings.runner.shutdown_grace
        try:
            async with asyncio.timeout(grace + 30.0):
                await asyncio.gather(*(self._stop(wid) for wid in ids), return_exceptions=True)
        except TimeoutError:
            logger.error("workflows did not stop in time; their rows stay 'running' for recovery")

    async def recover(self) -> tuple[int, int]:
        """After a (re)connect: workflows a dead process left running, and results stored but
        never delivered, go through the outcome path. Returns (interrupted, delivered)."""
        settled: set[str] = set()
        interrupted = delivered = 0
        for record in await self._store.running():
            if record.workflow_id in self._running or record.workflow_id in self._resuming:
                continue
            spec = self._workflows.get(record.command)
            steps = await self._store.steps(record.workflow_id) if spec and spec.resumable else []
            if spec is not None and steps:
                settled.add(record.workflow_id)
                if self._counted() >= self._settings.runner.max_concurrent:
                    # Full: it waits, still running in the store, for a place (not a resume yet).
                    self._deferred[record.workflow_id] = (record, spec, steps)
                    logger.info(
                        "workflow {}: resumes once fewer than {} workflows run",
                        record.workflow_id,
                        self._settings.runner.max_concurrent,
                    )
                    continue
                delivered += await self._resume(record, spec, steps)
                continue
            rung = await self._conclude_left_over(record, WorkflowStatus.INTERRUPTED, _STOPPED)
            settled.add(record.workflow_id)
            interrupted += 1
            delivered += rung is not Rung.NONE
        for record in await self._store.pending_delivery():
            if record.workflow_id in self._running or record.workflow_id in settled:
                continue
            try:
                document = await self._store.read_result(record.workflow_id)
            except NotifierError as exc:
                logger.error("workflow {}: stored result unreadable: {}", record.workflow_id, exc)
                continue
            stored = StoredResult(record, document)
            rung = await self._deliver_outcome(stored, self._ladder_for(record), give_up=False)
            delivered += rung is not Rung.NONE
        return interrupted, delivered

    def _resume_deferred(self) -> None:
        """A place freed up: resume the oldest workflow waiting for one, in the background."""
        if self._closing or not self._deferred:
            return
        if self._counted() >= self._settings.runner.max_concurrent:
            return
        workflow_id = next(iter(self._deferred))
        record, spec, steps = self._deferred.pop(workflow_id)
        self._resuming.add(workflow_id)

        async def resume() -> None:
            try:
                await self._resume(record, spec, steps)
            except NotifierError as exc:
                logger.error("workflow {}: could not be resumed: {}", workflow_id, exc)
            finally:
                self._resuming.discard(workflow_id)

        task = asyncio.create_task(resume(), name=f"resume-{workflow_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _max_steps(record: WorkflowRecord, spec: WorkflowSpec) -> int | None:
        """The most steps the run records, if its workflow says (for the resume notice); a
        workflow whose `max_steps` fails only loses the total from the notice."""
        if spec.max_steps is None:
            return None
        try:
            return spec.max_steps(record.options)
        except Exception as exc:  # noqa: BLE001 - the workflow's code; the notice goes on
            logger.warning("workflow {}: max_steps failed: {!r}", record.workflow_id, exc)
            return None

    async def _resume(
        self, record: WorkflowRecord, spec: WorkflowSpec, steps: list[RecordedStep]
    ) -> int:
        """Run a workflow a dead process left running again from its recorded steps, or give it
        up past `runner.max_resumes` (failed, naming the step it died in). Returns 1 if a
        give-up message was delivered, else 0."""
        if self._closing:
            return 0  # it stays running in the store and resumes on the next start
        limit = self._settings.runner.max_resumes
        resumes = await self._store.note_resume(record.workflow_id)
        record = replace(record, resumes=resumes)
        if resumes > limit:
            return await self._give_up(record, spec, steps, limit)
        delivery = Delivery(
            self._io, self._target_for(record), None, on_event=self._ladder_events(record)
        )
        await self._relaunch(record, spec, steps, delivery, cause="a restart")
        return 0

    async def _relaunch(
        self,
        record: WorkflowRecord,
        spec: WorkflowSpec,
        steps: list[RecordedStep],
        delivery: Delivery,
        *,
        cause: str,
    ) -> _Running:
        """Run a workflow again from its recorded steps (none: from the start), operators and
        its user told once that it resumed after `cause`."""
        journal = StoreJournal(self._store, record.workflow_id, steps)
        done = steps_done_text(journal.names, of=self._max_steps(record, spec))
        # Operators hear it before the body runs again (the outbox holds the notice even if
        # this run dies as the last one did).
        summary = f"resumed after {cause}: {done} done"
        await self._emit(self._notice(record, Event.RESUMED, summary=summary))
        running = self._launch(record, spec, delivery, journal)
        WORKFLOW_RESUMES.labels(outcome="resumed").inc()
        logger.info(
            "workflow {} resumed after {} (resume {} of at most {}): {} already done",
            record.workflow_id,
            cause,
            record.resumes,
            self._settings.runner.max_resumes,
            done,
        )
        text = (
            f"🔄 `/{record.command}` (workflow `{record.workflow_id}`) resumed after {cause}: "
            f"{done} {'was' if journal.done == 1 else 'were'} already done; it goes on from there."
        )
        # The user hears it once, through the ladder (on its channel or DM rung when no token is
        # left).
        running.helpers.append(
            asyncio.create_task(
                delivery.deliver(OutgoingMessage(content=text), stage="resumed"),
                name=f"resumed-{record.workflow_id}",
            )
        )
        return running

    # -- distributed mode: a worker runs the workflow a gateway stored ---------------------------

    async def run_job(self, ticket: JobTicket) -> bool:
        """Run the workflow a gateway stored and deferred (``notifier worker``) until it ends;
        True once it has concluded (stored and delivered, or found concluded already: a job run
        twice does nothing the second time), False if it was left running to resume elsewhere
        (this worker is shutting down, or is not the one running it).

        A workflow with recorded steps, or one whose job is a retry (`ticket.attempt` > 0: the
        worker that ran it died or stopped), resumes: counted against `runner.max_resumes`
        (then failed, naming the step it died in), its user told once. Delivery starts with the
        interaction token the gateway stored, while it lives (follow-ups, then the hand-off
        before it dies), and goes on with the channel and DM rungs.
        """
        record = await self._store.get(ticket.workflow_id)
        if record is None:
            logger.error("job for workflow {}: no such workflow in the store", ticket.workflow_id)
            return True
        if record.status is not WorkflowStatus.RUNNING:
            return True  # concluded by an earlier run of this job
        if record.workflow_id in self._running or self._closing:
            return False
        self._store.adopt(record)  # its result is held in memory if the database is away then
        spec = self._workflows.get(record.command)
        if spec is None:
            error = f"no worker here knows the workflow /{record.command}"
            await self._conclude_left_over(record, WorkflowStatus.FAILED, error)
            return True
        steps = await self._store.steps(record.workflow_id) if spec.resumable else []
        delivery = self._delivery(
            record,
            token=ticket.token,
            interaction_created_at=ticket.interaction_created_at,
            attachment_limit_bytes=ticket.attachment_limit_bytes,
        )
        if steps or ticket.attempt > 0:
            limit = self._settings.runner.max_resumes
            resumes = await self._store.note_resume(record.workflow_id)
            record = replace(record, resumes=resumes)
            if resumes > limit:
                if steps:
                    await self._give_up(record, spec, steps, limit)
                else:
                    error = f"gave up after {limit} resumes; it stopped before its first step"
                    WORKFLOW_RESUMES.labels(outcome="gave_up").inc()
                    await self._conclude_left_over(record, WorkflowStatus.FAILED, error)
                return True
            running = await self._relaunch(record, spec, steps, delivery, cause="a worker stopped")
        else:
            running = self._launch(
                record, spec, delivery, StoreJournal(self._store, record.workflow_id)
            )
            running.throttle.report(ProgressState("starting", 0.0, "", time.time()))
            await self._emit(self._notice(record, Event.STARTED))
            logger.info(
                "workflow {} started on this worker: /{} by user {}",
                record.workflow_id,
                record.command,
                record.user_id,
            )
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(running.task)
        current = await self._store.get(record.workflow_id)
        return current is None or current.status is not WorkflowStatus.RUNNING

    def _delivery(
        self,
        record: WorkflowRecord,
        *,
        token: str | None,
        interaction_created_at: float | None,
        attachment_limit_bytes: int,
    ) -> Delivery:
        """The ladder for `record`: from its interaction token while the token lives (a lease
        from when the interaction was created), then the channel and DM rungs. A started
        workflow's request and a worker's job ticket both come here."""
        discord = self._settings.discord
        lease = None
        if token is not None and interaction_created_at is not None:
            lease = InteractionLease(
                created_at=interaction_created_at,
                ttl_s=discord.interaction_ttl,
                safety_margin_s=discord.safety_margin,
                handoff_before_s=discord.handoff_before,
            )
        target = DeliveryTarget(
            workflow_id=record.workflow_id,
            user_id=record.user_id,
            channel_id=self._results_channel(record),
            ephemeral=record.ephemeral,
            token=token if lease is not None else None,
            attachment_limit_bytes=attachment_limit_bytes,
        )
        return Delivery(self._io, target, lease, on_event=self._ladder_events(record))

    async def _give_up(
        self, record: WorkflowRecord, spec: WorkflowSpec, steps: list[RecordedStep], limit: int
    ) -> int:
        name = await self._probe(record, spec, steps)
        where = f"in step {name!r}" if name else f"after step {steps[-1].name!r}"
        error = f"gave up after {limit} resumes; it stopped {where} each time"
        logger.error("workflow {}: {}", record.workflow_id, error)
        WORKFLOW_RESUMES.labels(outcome="gave_up").inc()
        rung = await self._conclude_left_over(record, WorkflowStatus.FAILED, error)
        return int(rung is not Rung.NONE)

    async def _conclude_left_over(
        self, record: WorkflowRecord, status: WorkflowStatus, error: str
    ) -> Rung:
        """End a workflow a dead process left running, through the one outcome path: stored
        with `status` and `error`, operators told, the user reached on the rung the ladder
        finds (the token is long dead)."""
        stored = await self._persist(
            record, status, None, error, stage=record.stage, progress=record.progress
        )
        await self._notify_outcome(
            stored, duration_s=None, stage=record.stage, progress=record.progress
        )
        return await self._deliver_outcome(stored, self._ladder_for(record), give_up=False)

    async def _probe(
        self, record: WorkflowRecord, spec: WorkflowSpec, steps: list[RecordedStep]
    ) -> str | None:
        """The name of the step the workflow was running when it died: its body replayed up to
        the first step never recorded (`journal.StepProbe`). None if the body gets there not
        (it ends, fails, or takes longer than _PROBE_LIMIT_S)."""

        def ignore(*, stage: str, progress: float, detail: str = "") -> None:
            return None

        ctx = _context_for(record, ignore, StepProbe(steps))
        try:
            async with asyncio.timeout(_PROBE_LIMIT_S):
                await spec.run(dict(record.options), ctx)
        except StepReached as reached:
            return reached.name
        except Exception as exc:  # noqa: BLE001 - the body's own failure: the probe has no answer
            logger.debug("workflow {}: probe ended without a step: {}", record.workflow_id, exc)
        return None

    # -- fanout --------------------------------------------------------------------------------

    async def report_storage_error(self, workflow_id: str, exc: BaseException) -> None:
        """The store's write failed and is being retried: operators hear it through the fanout."""
        running = self._running.get(workflow_id)
        record = running.record if running is not None else await self._store.get(workflow_id)
        if record is None:
            return
        await self._emit(
            self._notice(record, Event.STORAGE_ERROR, error=f"{type(exc).__name__}: {exc}")
        )

    def _notice(self, record: WorkflowRecord, event: Event, **fields: Any) -> Notice:
        return Notice(
            event=event,
            workflow_id=record.workflow_id,
            user_id=record.user_id,
            user_name=record.user_name,
            command=record.command,
            guild_id=record.guild_id,
            channel_id=record.channel_id,
            options=dict(record.options),
            **fields,
        )

    async def _emit(self, notice: Notice) -> None:
        try:
            await self._notify(notice)
        except Exception as exc:  # noqa: BLE001 - the fanout must never take a workflow down
            logger.opt(exception=exc).error(
                "fanout refused {} for workflow {}", notice.event.value, notice.workflow_id
            )


def _context_for(record: WorkflowRecord, report: ReportProgress, journal: StepJournal) -> Context:
    return Context(
        workflow_id=record.workflow_id,
        user_id=record.user_id,
        guild_id=record.guild_id,
        private=record.ephemeral,
        options=record.options,
        report=report,
        journal=journal,
    )


def _journaled(record: WorkflowRecord, body: WorkflowBody | WorkflowSpec) -> _JournaledBody:
    """The body as the runner calls it: a spec's run gets a Context with the run's journal; a
    bare body gets the progress callback (and records no steps)."""
    if isinstance(body, WorkflowSpec):
        spec = body

        def run_spec(
            options: Mapping[str, str], report: Report, journal: StepJournal | None
        ) -> Awaitable[dict[str, Any]]:
            assert journal is not None
            return spec.run(options, _context_for(record, report, journal))

        return run_spec
    bare = body

    def run_bare(
        options: Mapping[str, str], report: Report, journal: StepJournal | None
    ) -> Awaitable[dict[str, Any]]:
        return bare(options, report)

    return run_bare


def results_channel(
    configured: int | Mapping[int, int] | None,
    *,
    guild_id: int | None,
    channel_id: int | None,
    ephemeral: bool,
) -> int | None:
    """The channel a workflow's hand-off points to and its later progress and result go to.

    `configured` is `workflows.<name>.results_channel_id`: one channel, or `{guild_id:
    channel_id}` per guild (a guild not in the map keeps the command's channel). A command
    used outside a guild (a DM) and a private run keep the command's channel: the ladder never
    posts a private run in a channel, and a DM has no server whose channel could take over.
    """
    if configured is None or guild_id is None or ephemeral:
        return channel_id
    if isinstance(configured, Mapping):
        return configured.get(guild_id, channel_id)
    return configured


def _estimate_from(
    source: EstimateSource, options: Mapping[str, str]
) -> tuple[float | None, tuple[str, str] | None]:
    """Seconds from one estimate source for these options, and the (option, value) that chose
    them from a map (None for a single number, or when no option's value is a key)."""
    if source is None:
        return None, None
    if not isinstance(source, Mapping):
        return float(source), None
    for key, value in options.items():
        if value in source:
            return float(source[value]), (key, value)
    return None, None


def _summary(document: Mapping[str, Any] | None) -> str:
    if not document:
        return ""
    summary = document.get("summary")
    if isinstance(summary, str):
        return summary[:500]
    counts = Counter(type(v).__name__ for v in document.values())
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())
