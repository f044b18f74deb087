"""kill -9 after notices are queued: the next process sends every pending notice exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from notifier.events import Event
from notifier.fanout.outbox import Outbox, OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import HttpSink, wait_until

from .support import make_notice, make_settings, open_fanout, settled

PROJECT_ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from concurrent.futures import ThreadPoolExecutor

    import aiohttp

    from notifier.config import Settings
    from notifier.events import Notice
    from notifier.fanout.dispatch import Fanout
    from notifier.plugins import PluginContext


    async def main() -> None:
        settings = Settings.model_validate(json.loads(sys.argv[1]))
        notices = [Notice.from_json(n) for n in json.loads(sys.argv[2])]
        async with aiohttp.ClientSession() as http:
            context = PluginContext(http=http, executor=ThreadPoolExecutor(2))
            fanout = await Fanout.open(settings, context)
            for notice in notices:
                await fanout.emit(notice)
            print("queued", flush=True)
            await asyncio.sleep(3600)  # killed long before


    asyncio.run(main())
    """
)


def hook_entry(url: str) -> list[dict[str, Any]]:
    return [{"name": "hook", "plugin": "apprise", "on": ["completed"], "options": {"urls": [url]}}]


async def test_pending_notices_survive_kill_9_and_are_sent_once(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    stuck = await sinks(holding=True)  # the first process's sink never answers
    notices = [make_notice(Event.COMPLETED) for _ in range(5)]
    first = make_settings(tmp_path, hook_entry(stuck.json_url()), timeout=60.0)
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        first.model_dump_json(),
        json.dumps([n.to_json() for n in notices]),
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.strip() == b"queued"
        # Every notice reached the sink, none was marked sent: the worst crash window.
        await wait_until(lambda: stuck.held == 5, what="five sends in flight")
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    async with await Outbox.open(tmp_path / "outbox.sqlite3") as outbox:
        rows = await outbox.pending()
    assert len(rows) == 5
    assert {r.attempts for r in rows} == {0}

    working = await sinks()
    second = make_settings(tmp_path, hook_entry(working.json_url()))
    async with open_fanout(second, context) as fanout:
        final = await settled(fanout, 5)
    assert {r.status for r in final} == {OutboxStatus.SENT}
    keys = working.keys()
    assert sorted(str(k) for k in keys) == sorted(
        r.idempotency_key for r in final
    )  # each notice exactly once
    assert len(set(keys)) == 5
    # The resends carry the keys of the requests the dead process had in flight, so a sink that
    # dedupes on Idempotency-Key would have shown each notice once even across the crash.
    assert set(keys) == set(stuck.keys())

    # A third start finds nothing left to send.
    async with open_fanout(second, context) as fanout:
        await fanout.drain(5)
        assert await fanout.outbox.count(OutboxStatus.PENDING) == 0
    assert len(working.received) == 5
