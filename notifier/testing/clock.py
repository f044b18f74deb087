"""A monotonic clock that tests can move forward.

Interaction token lifetimes (15 minutes) and the 3 second initial-response
deadline are checked against this clock, so a test can jump past them with
:meth:`Clock.advance` instead of sleeping.
"""

from __future__ import annotations

import time


class Clock:
    """``time.monotonic()`` plus an offset that only ever grows."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Seconds on the emulator's clock."""
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Pretend ``seconds`` have passed for every time-based Discord rule."""
        if seconds < 0:
            raise ValueError("the emulator clock cannot go backwards")
        self._offset += seconds
