"""Garbage-collector settings for a bot that tracks thousands of workflows at once.

CPython's cyclic collector runs a young collection every 700 net allocations and, from time to
time, a full one over every tracked object. With 10,000 workflows in flight (bench.scale) the heap
holds millions of objects, and full collections took 0.4 to 1 s each, 25 s of a 68 s run: the
event loop, and with it the gateway heartbeat, stood still each time. Two standard remedies:

- `gc.freeze()` once start-up is done: the modules, nextcord, pydantic models and config loaded
  at start live for the whole process, so they move to a permanent generation that no collection
  scans again.
- a higher first threshold: fewer young collections, so fewer survivors promoted towards the old
  generation, and a full collection becomes due less often. Memory for cycles waits a little
  longer to be freed; the bot's objects are mostly freed by reference counting anyway.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "tune_garbage_collector"]

YOUNG_THRESHOLD: Final = 50_000


def tune_garbage_collector(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Call once, after start-up and before the bot takes work."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
