"""A run's recorded steps, kept in the store: the `StepJournal` the runner hands each Context.

Theory of operation. `Context.step` asks the journal for the steps an earlier run recorded
(`replayed`) and hands it each new step's value (`record`, which returns once the store has the
row on disk). The runner keeps one `StoreJournal` per running workflow and reads it for what the
user and operators see: steps finished, the step running now. At shutdown the runner sets
`stop_requested`: the run stops as it is about to start its next step (CancelledError from
`began`), so the step it was in is finished and recorded rather than lost.

Replayed steps are the store's rows from index 0 up to the first gap: a gap cannot come from
`Context.step` (a step that raises takes no index), so rows past one are ignored rather than
handed to the wrong step.

`StepProbe` is the journal for one question asked when a workflow is given up: which step was it
running each time it died? It replays the recorded steps and stops the body at the first step
that was never recorded (`StepReached`), before that step's function runs: the workflow body is
deterministic outside its steps, so the step it reaches is the one it was in.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Final

from ..records import RecordedStep
from ..store import Store

__all__ = [
    "StepProbe",
    "StepReached",
    "StoreJournal",
    "contiguous",
    "steps_done_text",
    "steps_listing",
]

_NUMBERED = re.compile(r"^([a-z][a-z_ -]*):\d+$")
_SHOWN_NAMES: Final = 3


def contiguous(steps: Sequence[RecordedStep]) -> list[RecordedStep]:
    """The steps from index 0 up to the first missing index, in order."""
    kept: list[RecordedStep] = []
    for step in sorted(steps, key=lambda s: s.index):
        if step.index != len(kept):
            break
        kept.append(step)
    return kept


class StoreJournal:
    """The journal of one running workflow: replays `recorded`, records through the store."""

    def __init__(
        self, store: Store, workflow_id: str, recorded: Sequence[RecordedStep] = ()
    ) -> None:
        self._store = store
        self._workflow_id = workflow_id
        kept = contiguous(recorded)
        self.replayed: tuple[tuple[str, object], ...] = tuple((s.name, s.value) for s in kept)
        self.names: list[str] = [s.name for s in kept]
        self.running_step: str | None = None
        # Set at shutdown: the next new step stops the run instead (a step boundary).
        self.stop_requested = False

    @property
    def done(self) -> int:
        """Steps recorded so far (by earlier runs and this one)."""
        return len(self.names)

    def began(self, index: int, name: str) -> None:
        if self.stop_requested:
            # The shutdown's stop, at a step boundary: the runner leaves the workflow running
            # in the store (to resume) as for a cancel at shutdown.
            raise asyncio.CancelledError(f"the bot is shutting down before step {name!r}")
        self.running_step = name

    async def record(self, index: int, name: str, value: object) -> None:
        await self._store.record_step(self._workflow_id, index, name, value)
        self.running_step = None
        if index == len(self.names):
            self.names.append(name)


class StepReached(BaseException):
    """The probed body reached a step never recorded (`name`). A BaseException, so a workflow's
    own ``except Exception`` around a step does not swallow it."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


class StepProbe:
    """Replays `recorded`; the first new step stops the body with StepReached (see the module)."""

    def __init__(self, recorded: Sequence[RecordedStep]) -> None:
        self.replayed = tuple((s.name, s.value) for s in contiguous(recorded))

    def began(self, index: int, name: str) -> None:
        raise StepReached(name)

    async def record(self, index: int, name: str, value: object) -> None:
        raise StepReached(name)  # never reached: `began` stops the body first


def steps_done_text(names: Sequence[str], *, of: int | None = None) -> str:
    """ "7 pages" when every step is `page:N`, "8 steps" otherwise (what a user reads); with the
    most steps the run records, "7 of up to 15 pages"."""
    count = len(names)
    kinds = {match.group(1) if (match := _NUMBERED.match(n)) else None for n in names}
    kind = kinds.pop() if len(kinds) == 1 else None
    word = kind or "step"
    noun = word if (of if of is not None else count) == 1 else f"{word}s"
    return f"{count} {noun}" if of is None else f"{count} of up to {max(of, count)} {noun}"


def steps_listing(names: Sequence[str]) -> str:
    """The names of the last few finished steps, for a status line."""
    shown = ", ".join(names[-_SHOWN_NAMES:])
    return f"…, {shown}" if len(names) > _SHOWN_NAMES else shown
