"""The contract between a workflow body and the runner that drives it.

A workflow knows nothing about Discord: the runner validates the user's options with
`WorkflowSpec.validate` before anything starts (so a bad option becomes an ephemeral error, not a
failed run), then awaits `WorkflowSpec.run`, which reports progress through a plain callback and
returns a JSON-serialisable result dict that the runner persists before delivering it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import NotifierError

__all__ = [
    "InvalidWorkflowOptions",
    "ReportProgress",
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


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """What the runner needs to know about one workflow.

    `validate(options)` is async because checking a URL resolves its host; it returns the options
    normalised (store and run those) or raises InvalidWorkflowOptions. `run(options, report)`
    returns the result dict or raises WorkflowFailed; asyncio.CancelledError passes through.
    Both return coroutines (not just awaitables) so the runner can hand them to create_task.

    `close`, if set, releases what the workflow holds across runs (autointel's page worker
    processes); the bot awaits it once at shutdown, after the last run has ended.
    """

    name: str
    description: str
    validate: Callable[[Mapping[str, str]], Coroutine[Any, Any, dict[str, str]]]
    run: Callable[[Mapping[str, str], ReportProgress], Coroutine[Any, Any, dict[str, Any]]]
    close: Callable[[], Coroutine[Any, Any, None]] | None = None
