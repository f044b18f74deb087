"""`progress` notices are opt-in and throttled per (notifier, workflow), latest wins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from notifier.events import Event, Notice
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, wait_until

from .support import make_notice, make_settings, open_fanout

INTERVAL_S = 0.4
WORKFLOW = "ab" * 16
OTHER = "cd" * 16


def progress(value: float, workflow_id: str = WORKFLOW) -> Notice:
    return make_notice(Event.PROGRESS, workflow_id=workflow_id, progress=value, stage="pages")


async def test_progress_is_opt_in_throttled_and_latest_wins(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "watcher",
                "plugin": "apprise",
                "on": ["progress", "completed"],
                "options": {"urls": [sink.json_url("/watcher")]},
                "templates": {"progress": {"title": "{progress}", "body": "{workflow_id}"}},
            },
            {
                "name": "quiet",
                "plugin": "apprise",
                "on": ["completed"],
                "options": {"urls": [sink.json_url("/quiet")]},
            },
        ],
    )

    def titles(path: str = "/watcher", workflow_id: str | None = None) -> list[str]:
        return [
            r.body["title"]
            for r in sink.received
            if r.path == path and (workflow_id is None or r.body["message"] == workflow_id)
        ]

    async with open_fanout(settings, context, progress_interval_s=INTERVAL_S) as fanout:
        for value in (0.1, 0.2, 0.3):
            await fanout.emit(progress(value))
        await fanout.emit(progress(0.5, OTHER))  # another workflow has its own slot

        await wait_until(lambda: len(titles()) == 3, what="three progress notices")
        # 10% went at once; 20% was held, then replaced by 30%, which went at the interval's end.
        assert titles(workflow_id=WORKFLOW) == ["10%", "30%"]
        assert titles(workflow_id=OTHER) == ["50%"]

        # A progress held when its workflow completes is dropped: completion supersedes it.
        await fanout.emit(progress(0.9))
        await fanout.emit(make_notice(Event.COMPLETED, workflow_id=WORKFLOW))
        await wait_until(lambda: len(titles("/quiet")) == 1, what="completed reached quiet")
        await asyncio.sleep(INTERVAL_S * 2)  # past the moment the held 90% would have gone
        await fanout.drain(5)

    assert titles(workflow_id=WORKFLOW) == ["10%", "30%"]
    assert "Completed: autointel" in titles()
    assert titles("/quiet") == ["Completed: autointel"]  # never a progress notice
