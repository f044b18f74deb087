"""The collector settings bot.py applies once the bot is up (see notifier.runner.gc_tuning)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from notifier.runner.gc_tuning import YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    gc.unfreeze()
    _, middle, old = gc.get_threshold()
    loaded_at_start = [object()]  # stands for the modules and config loaded before the bot is up

    tune_garbage_collector()

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    # Frozen: in no generation that a collection scans, so no full collection walks it again.
    assert all(loaded_at_start is not o for gen in range(3) for o in gc.get_objects(generation=gen))
    created_later = [object()]
    assert any(created_later is o for o in gc.get_objects(generation=0))
