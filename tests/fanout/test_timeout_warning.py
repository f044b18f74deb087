"""The timeout-warning plugin: a warning on `started` when the estimate exceeds the threshold,
recorded as skipped (not failed) otherwise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from notifier.events import Event
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink

from .support import DMRecorder, make_notice, make_settings, open_fanout, settled


async def test_warning_fires_for_a_long_estimate(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    dms: DMRecorder,
) -> None:
    ops = await sinks()
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "long-run",
                "plugin": "timeout_warning",
                "on": ["started"],
                "options": {"threshold_s": 600, "urls": [ops.json_url()], "to_requester": True},
            }
        ],
    )
    notice = make_notice(Event.STARTED, estimate_s=1200.0, user_id=111)
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(notice)
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.SENT
    (request,) = ops.received
    text = request.body["title"] + "\n" + request.body["message"]
    assert "20m 00s" in text  # the estimate
    assert "15 minutes" in text  # Discord's interaction limit
    assert "delivered by a channel message or a DM" in text  # how the result arrives
    assert f"/retrieve_results workflow_id:{notice.workflow_id}" in text
    ((user, content, embed),) = dms.sent
    assert user == 111
    assert content == "Long workflow: autointel may take 20m 00s"
    assert embed is not None
    assert "/retrieve_results" in embed["description"]


@pytest.mark.parametrize("estimate_s", [60.0, 600.0, None])
async def test_no_warning_within_the_threshold_is_recorded_as_skipped(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    dms: DMRecorder,
    estimate_s: float | None,
) -> None:
    ops = await sinks()
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "long-run",
                "plugin": "timeout_warning",
                "on": ["started"],
                "options": {"threshold_s": 600, "urls": [ops.json_url()], "to_requester": True},
            }
        ],
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.STARTED, estimate_s=estimate_s))
        (row,) = await settled(fanout, 1)
    assert row.status is OutboxStatus.SKIPPED
    assert row.last_error is not None
    assert "threshold" in row.last_error
    assert ops.received == []
    assert dms.sent == []
