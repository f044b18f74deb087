"""The outbox on its own (a real SQLite file), the backoff table, and the outbox CLI."""

from __future__ import annotations

import argparse
import io
import os
import random
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from notifier.cli import outbox as outbox_cli
from notifier.events import Event
from notifier.fanout.outbox import (
    NewNotice,
    Outbox,
    OutboxStatus,
    backoff_delay_s,
    idempotency_key,
    outbox_path,
)
from notifier.plugins import PluginContext
from notifier.store import StoreLock
from notifier.testing import HttpSink, free_port, wait_until

from .support import make_notice, make_settings, open_fanout, rows_of, settled


class _Fixed(random.Random):
    def __init__(self, draw: float) -> None:
        super().__init__()
        self.draw = draw

    def random(self) -> float:
        return self.draw


@pytest.mark.parametrize(
    ("attempt", "initial_s", "max_s", "draw", "expected_s"),
    [
        (1, 2.0, 300.0, 0.0, 1.0),  # half the ceiling, at least
        (1, 2.0, 300.0, 1.0, 2.0),  # the full ceiling, at most
        (2, 2.0, 300.0, 1.0, 4.0),
        (3, 2.0, 300.0, 0.5, 6.0),  # ceiling 8: 4 + 0.5 * 4
        (10, 2.0, 300.0, 1.0, 300.0),  # capped by backoff_max
        (10, 2.0, 300.0, 0.0, 150.0),
    ],
)
def test_backoff_is_exponential_capped_and_jittered(
    attempt: int, initial_s: float, max_s: float, draw: float, expected_s: float
) -> None:
    assert backoff_delay_s(
        attempt, initial_s=initial_s, max_s=max_s, rng=_Fixed(draw)
    ) == pytest.approx(expected_s)


def test_idempotency_key_names_notifier_event_workflow_and_moment() -> None:
    notice = make_notice(Event.COMPLETED, occurred_at=1000.0)
    same = make_notice(Event.COMPLETED, workflow_id=notice.workflow_id, occurred_at=1000.0)
    assert idempotency_key("a", notice) == idempotency_key("a", same)
    assert idempotency_key("a", notice) != idempotency_key("b", notice)
    later = make_notice(Event.COMPLETED, workflow_id=notice.workflow_id, occurred_at=1000.5)
    assert idempotency_key("a", notice) != idempotency_key("a", later)
    failed = make_notice(Event.FAILED, workflow_id=notice.workflow_id, occurred_at=1000.0)
    assert idempotency_key("a", notice) != idempotency_key("a", failed)


def test_default_outbox_path_is_in_storage(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [], outbox_path=None)
    assert outbox_path(settings) == tmp_path / "data" / "outbox.sqlite3"


async def test_rows_round_trip_and_the_unique_key_blocks_a_second_queueing(tmp_path: Path) -> None:
    notice = make_notice(Event.FAILED, error="x", estimate_s=12.5)
    async with await Outbox.open(tmp_path / "o.sqlite3") as outbox:
        (row,) = await outbox.enqueue([NewNotice("n", "apprise", notice)], now_s=100.0)
        assert await outbox.enqueue([NewNotice("n", "apprise", notice)], now_s=101.0) == []
        assert row.notice == notice
        assert row.status is OutboxStatus.PENDING
        assert row.next_attempt_at == row.created_at == 100.0
        await outbox.mark_retry(
            row.id,
            attempts=1,
            error="boom",
            next_attempt_at=200.0,
            targets={"t": {"status": "failed", "errors": ["e"], "settled": False}},
            now_s=101.0,
        )
        assert await outbox.due(now_s=150.0) == []
        assert [r.id for r in await outbox.due(now_s=200.0)] == [row.id]
        assert await outbox.due(now_s=200.0, exclude={row.id}) == []
        assert await outbox.next_due_at() == 200.0
        await outbox.mark_failed(row.id, attempts=2, error="dead", now_s=202.0)
        stored = await outbox.get(row.id)
        assert stored is not None
        assert (stored.status, stored.attempts, stored.last_error) == (
            OutboxStatus.FAILED,
            2,
            "dead",
        )
        assert await outbox.requeue(row.id, now_s=300.0)
        assert not await outbox.requeue(row.id, now_s=300.0)  # not failed any more
        again = await outbox.get(row.id)
        assert again is not None
        assert (again.status, again.attempts) == (OutboxStatus.PENDING, 0)
    # The table survives a reopen; the file is the owner's only.
    async with await Outbox.open(tmp_path / "o.sqlite3") as outbox:
        assert await outbox.count(OutboxStatus.PENDING) == 1
    assert file_mode(tmp_path / "o.sqlite3") == 0o600


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ---------------------------------------------------------------------------------------------
# CLI


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="notifier")
    subparsers = parser.add_subparsers(dest="command", required=True)
    outbox_cli.register(subparsers)
    return parser.parse_args(list(argv))


async def run(settings: object, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await outbox_cli.run(parse(*argv), settings, out=out, err=err)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


async def test_cli_lists_and_retries_failed_notices(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    port = free_port()  # down for now
    entries = [
        {
            "name": "later",
            "plugin": "apprise",
            "on": ["completed", "failed"],
            "options": {"urls": [f"json://127.0.0.1:{port}/hook"]},
        }
    ]
    settings = make_settings(tmp_path, entries, max_attempts=1)
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED))
        await fanout.emit(make_notice(Event.FAILED, error="x"))
        rows = await settled(fanout, 2)
    assert {r.status for r in rows} == {OutboxStatus.FAILED}
    first, second = sorted(r.id for r in rows)

    code, out, _ = await run(settings, "outbox", "list", "--status", "failed")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "STATUS", "TRY", "NOTIFIER"]
    assert len(lines) == 4  # header, two rows, totals
    assert "ClientConnectorError" in out
    assert lines[-1] == "(2 shown; 0 pending, 0 sent, 2 failed, 0 skipped)"

    code, out, _ = await run(settings, "outbox", "list", "--limit", "1")
    assert code == 0
    assert out.splitlines()[1].split()[0] == str(second)  # newest first

    code, _, err = await run(settings, "outbox", "retry", "999")
    assert (code, err.strip()) == (1, "no outbox notice with id 999")

    code, out, _ = await run(settings, "outbox", "retry", str(first))
    assert code == 0
    assert out.startswith(f"requeued notice {first} ")
    code, _, err = await run(settings, "outbox", "retry", str(first))
    assert code == 1
    assert "pending, not failed" in err

    code, out, _ = await run(settings, "outbox", "retry", "--all-failed")
    assert (code, out.strip()) == (
        0,
        "requeued 1 failed notice(s); the bot sends them when it starts",
    )

    # The sink is up now: the next start sends both requeued notices.
    sink = await sinks(port=port)
    async with open_fanout(settings, context) as fanout:
        final = await settled(fanout, 2)
    assert {r.status for r in final} == {OutboxStatus.SENT}
    assert len(sink.received) == 2


async def test_a_running_fanout_picks_up_a_cli_retry(
    tmp_path: Path, context: PluginContext, sinks: Callable[..., Awaitable[HttpSink]]
) -> None:
    sink = await sinks()
    sink.statuses.append((400, {"message": "bad request, this once"}))
    entries = [
        {
            "name": "hook",
            "plugin": "apprise",
            "on": ["completed"],
            "options": {"urls": [sink.json_url()]},
        }
    ]
    settings = make_settings(tmp_path, entries)
    settings.storage.path.mkdir()
    bot_lock = StoreLock.acquire(settings.storage.path)  # held by "the bot", as its store does
    async with open_fanout(settings, context, poll_interval_s=0.1) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED))
        (row,) = await settled(fanout, 1)
        assert row.status is OutboxStatus.FAILED  # a 400 is permanent
        code, out, _ = await run(settings, "outbox", "retry", str(row.id))  # another process would
        assert code == 0
        assert out.strip() == (
            f"requeued notice {row.id} (completed to hook); "
            f"the running bot (PID {os.getpid()}) sends it within seconds"
        )

        async def sent() -> bool:
            (again,) = await rows_of(fanout)
            return again.status is OutboxStatus.SENT

        await wait_until(sent, what="the running fanout resent it")
    bot_lock.release()
    assert len(sink.received) == 2


async def test_cli_without_an_outbox_says_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [])
    code, _, err = await run(settings, "outbox", "list")
    assert code == 2
    assert "no outbox at" in err


async def test_a_damaged_outbox_is_moved_to_quarantine_and_a_new_one_takes_notices(
    tmp_path: Path, log_lines: list[str]
) -> None:
    path = tmp_path / "data" / "outbox.sqlite3"
    path.parent.mkdir()
    garbage = b"not an outbox at all " * 200
    path.write_bytes(garbage)

    async with await Outbox.open(path) as outbox:
        rows = await outbox.enqueue(
            [NewNotice("ops", "apprise", make_notice(Event.COMPLETED))], now_s=1.0
        )
        assert [r.status for r in rows] == [OutboxStatus.PENDING]

    [moved] = (path.parent / "quarantine").iterdir()
    assert re.fullmatch(r"outbox\.sqlite3\.\d{8}T\d{6}Z\.[0-9a-f]{8}", moved.name)
    assert moved.read_bytes() == garbage
    assert moved.stat().st_mode & 0o777 == 0o600
    assert any(line.startswith("ERROR") and "damaged" in line for line in log_lines)


async def test_the_cli_leaves_a_damaged_outbox_alone_and_says_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [])
    path = outbox_path(settings)
    path.write_bytes(b"not an outbox at all " * 200)

    code, _, err = await run(settings, "outbox", "list")

    assert code == 2
    assert "is damaged" in err and "start the bot" in err
    assert path.read_bytes().startswith(b"not an outbox")
    assert not (tmp_path / "quarantine").exists()
