"""The contract between a workflow body and the runner that drives it.

A workflow knows nothing about Discord: the runner validates the user's options with
`WorkflowSpec.validate` before anything starts (so a bad option becomes an ephemeral error, not a
failed run), then awaits `WorkflowSpec.run`, which reports progress through a plain callback and
returns a JSON-serialisable result dict that the runner persists before delivering it.

Authors rarely build a `WorkflowSpec` by hand: `@workflow` (`notifier.workflows.api`) reads one
from an async function's signature, and discovery (`notifier.workflows.discovery`) finds the
decorated functions in the operator's folders and installed packages.

Recorded steps. A workflow marks units of work with `Context.step`; the runner hands each run a
`StepJournal`: the steps an earlier run of the same workflow recorded before its process died
(`replayed`, in call order), and where a new step's value goes (`record`, durable before it
returns). The journal is the runner's (it writes through the store, which workflows may not
import); `MemoryJournal` keeps steps in memory for a run no bot started.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import NotifierError

__all__ = [
    "InvalidWorkflowOptions",
    "MemoryJournal",
    "ReportProgress",
    "StepJournal",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowSpec",
]


class ReportProgress(Protocol):
    """Progress callback the runner hands to `run`.

    Synchronous, cheap and never raising, so a workflow can call it as often as it likes without
    awaiting or guarding it; the runner throttles what reaches Discord. `progress` is a fraction in
    0..1 that never decreases within a run; `stage` is a short machine-friendly word and `detail`
    one human line.
    """

    def __call__(self, *, stage: str, progress: float, detail: str = "") -> None: ...


class StepJournal(Protocol):
    """Where a run's recorded steps come from and go to (see `Context.step`).

    `replayed` holds the (name, value) of the steps recorded by earlier runs of this workflow,
    in call order, contiguous from step 0: a resumed run gets them back instead of running them.
    `began(index, name)` is told, synchronously, before a new step's function runs (the runner
    shows it as the running step; it may raise to stop the run right there). `record` makes a
    new step's value durable before it returns; it raises a NotifierError (too large, not
    storable) that fails the step.
    """

    @property
    def replayed(self) -> Sequence[tuple[str, object]]: ...

    def began(self, index: int, name: str) -> None: ...

    async def record(self, index: int, name: str, value: object) -> None: ...


@dataclass(slots=True)
class MemoryJournal:
    """A journal in memory: nothing survives the process. For a run no bot started (a test or
    a script calling `spec.run`); pass `replayed` to try how a workflow resumes."""

    replayed: Sequence[tuple[str, object]] = ()
    recorded: list[tuple[int, str, object]] = field(default_factory=list)

    def began(self, index: int, name: str) -> None:
        return None

    async def record(self, index: int, name: str, value: object) -> None:
        self.recorded.append((index, name, value))


class InvalidWorkflowOptions(NotifierError, ValueError):
    """An option the user gave is unusable; nothing has started.

    `field` names the option (``url``, ``depth``) and `message` says what is wrong in words safe to
    show the user who typed it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class WorkflowFailed(NotifierError):
    """The workflow could not produce a result. `message` is safe to show the user."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class WorkflowDefinitionError(NotifierError, TypeError):
    """A `@workflow` cannot become a slash command as written (an annotation Discord has no
    option type for, a default outside its choices, a sync function...).

    Raised by the decorator, so a workflow file fails when it is loaded; discovery reports it with
    the file and `line` (the workflow's definition) instead of the decorator's own frame.
    """

    def __init__(self, workflow: str, message: str, *, line: int | None = None) -> None:
        self.workflow = workflow
        self.message = message
        self.line = line
        super().__init__(f"workflow {workflow!r}: {message}")


class WorkflowError(NotifierError):
    """The workflows could not be loaded or set up; the bot does not start.

    The message is one line (the first problem, and how many more there are); `problems` holds
    every one of them as text, for a caller that lists them all.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        self.problems = problems or (message,)
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """What the runner needs to know about one workflow.

    `validate(options)` is async because checking a URL resolves its host; it returns the options
    normalised (store and run those) or raises InvalidWorkflowOptions. `run(options, report)`
    returns the result dict or raises WorkflowFailed; asyncio.CancelledError passes through.
    Both return coroutines (not just awaitables) so the runner can hand them to create_task.
    `report` may be a `Context` (which is also a ReportProgress): that is how a run learns its
    workflow id, its user and its guild.

    `close`, if set, releases what the workflow holds across runs (autointel's page worker
    processes); the bot awaits it once at shutdown, after the last run has ended.

    `estimate_s` is the workflow's own idea of how long a run takes (seconds, or seconds per
    option value: ``{"deep": 900}``), used for the timeout warning until there is history and
    unless the operator configured one.

    `resumable`: a run this workflow's process left running with recorded steps is resumed at
    the next start (replaying them). False (``@workflow(resumable=False)``) keeps the older
    rule for it: interrupted, its user told to run it again.

    `max_steps(options)`, if set, is the most steps a run with these options records (a crawl's
    page budget): the resume notice then says "7 of up to 15 pages were already done" instead of
    "7 pages". None from it, or no `max_steps`, leaves the total out.
    """

    name: str
    description: str
    validate: Callable[[Mapping[str, str]], Coroutine[Any, Any, dict[str, str]]]
    run: Callable[[Mapping[str, str], ReportProgress], Coroutine[Any, Any, dict[str, Any]]]
    close: Callable[[], Coroutine[Any, Any, None]] | None = None
    estimate_s: float | Mapping[str, float] | None = None
    resumable: bool = True
    max_steps: Callable[[Mapping[str, str]], int | None] | None = None
