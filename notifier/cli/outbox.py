"""`python -m notifier outbox ...`: look into the notifier outbox and requeue dead notices.

    outbox list  [--status pending|sent|failed|skipped] [--limit N]
    outbox retry ID | --all-failed

`retry` only flips failed rows back to pending with a fresh attempt budget; it sends nothing itself:
it goes through the bot. A running bot (it holds the store's lock) picks them up within its
retry-loop poll (`notifier.fanout.dispatch.POLL_INTERVAL_S`); with no bot running, `retry` takes
the lock while it writes (so no bot starts half-way) and the bot sends them at its next start. Safe
next to the bot either way: each requeue is one atomic statement (SQLite WAL). `list` only reads.

`notifier.cli.main` lists `register` among its command groups; `run` is the group's handler.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from ..config import Settings
from ..errors import ConfigError, StoreError, StoreLocked
from ..fanout.outbox import Outbox, OutboxRow, OutboxStatus, open_outbox, outbox_path
from ..store import StoreLock

__all__ = ["register", "run"]

# Characters of `last_error` shown per row by `list`.
ERROR_PREVIEW_CHARS = 100


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `outbox` command (with `list` and `retry`) to the CLI's subparsers."""
    outbox = subparsers.add_parser(
        "outbox", help="inspect the notifier outbox and requeue failed notices"
    )
    actions = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="show notices, newest first")
    listing.add_argument(
        "--status", choices=[s.value for s in OutboxStatus], help="only rows in this state"
    )
    listing.add_argument("--limit", type=_positive, default=50, help="rows to show (default 50)")

    retry = actions.add_parser(
        "retry",
        help="requeue failed notices (the bot sends them)",
        description=(
            "Put failed notices back in the queue with a fresh attempt budget. Nothing is sent "
            "from here: a running bot sends them within seconds, a stopped one at its next start."
        ),
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the outbox id of one failed notice")
    which.add_argument("--all-failed", action="store_true", help="requeue every failed notice")
    outbox.set_defaults(handler=run)


def _when(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "-"
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _line(row: OutboxRow) -> str:
    if row.status is OutboxStatus.SENT:
        when = f"sent {_when(row.sent_at)}"
    elif row.status is OutboxStatus.PENDING:
        when = f"next {_when(row.next_attempt_at)}"
    else:
        when = f"at {_when(row.updated_at)}"
    error = (row.last_error or "").replace("\n", " ")
    if len(error) > ERROR_PREVIEW_CHARS:
        error = error[: ERROR_PREVIEW_CHARS - 3] + "..."
    return (
        f"{row.id:>6}  {row.status.value:<7}  {row.attempts:>3}  {row.notifier:<20}  "
        f"{row.event.value:<13}  {row.workflow_id:<32}  {when:<25}  {error}"
    )


async def _list(outbox: Outbox, args: argparse.Namespace, out: TextIO) -> int:
    status = OutboxStatus(args.status) if args.status else None
    rows = await outbox.rows(status=status, limit=args.limit)
    header = (
        f"{'ID':>6}  {'STATUS':<7}  {'TRY':>3}  {'NOTIFIER':<20}  {'EVENT':<13}  "
        f"{'WORKFLOW':<32}  {'WHEN (UTC)':<25}  LAST ERROR"
    )
    print(header, file=out)
    for row in rows:
        print(_line(row), file=out)
    counts = {s: await outbox.count(s) for s in OutboxStatus}
    print(
        f"({len(rows)} shown; " + ", ".join(f"{n} {s.value}" for s, n in counts.items()) + ")",
        file=out,
    )
    return 0


async def _retry(
    outbox: Outbox, args: argparse.Namespace, out: TextIO, err: TextIO, *, sender: str
) -> int:
    now = time.time()
    if args.all_failed:
        count = await outbox.requeue_failed(now_s=now)
        print(f"requeued {count} failed notice(s); {sender.format(it='them')}", file=out)
        return 0
    row = await outbox.get(args.id)
    if row is None:
        print(f"no outbox notice with id {args.id}", file=err)
        return 1
    if not await outbox.requeue(args.id, now_s=now):
        print(f"notice {args.id} is {row.status.value}, not failed; nothing to retry", file=err)
        return 1
    what = f"{row.event.value} to {row.notifier}"
    print(f"requeued notice {args.id} ({what}); {sender.format(it='it')}", file=out)
    return 0


async def _bot_lock(settings: Settings) -> tuple[StoreLock | None, str]:
    """The store's lock if no bot holds it (None if there is no store folder: no bot runs there
    either), and who will send what `retry` requeues (``{it}`` to fill in)."""
    root = settings.storage.path
    if not await asyncio.to_thread(root.is_dir):
        return None, "the bot sends {it} when it starts"
    try:
        lock = await asyncio.to_thread(StoreLock.acquire, root)
    except StoreLocked as exc:
        holder = f"PID {exc.pid}" if exc.pid is not None else "PID unknown"
        return None, f"the running bot ({holder}) sends {{it}} within seconds"
    return lock, "the bot sends {it} when it starts"


async def _run_shared(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    """The outbox in PostgreSQL (storage.backend: postgres): no file and no bot lock; whichever
    bot or worker polls next sends what `retry` requeues."""
    try:
        outbox = await open_outbox(settings, repair=False)
    except (StoreError, ConfigError) as exc:
        print(str(exc), file=err)
        return 2
    async with outbox:
        if args.outbox_command == "list":
            return await _list(outbox, args, out)
        sender = "the running bots and workers send {it} within seconds"
        return await _retry(outbox, args, out, err, sender=sender)


async def run(
    args: argparse.Namespace,
    settings: Settings,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `outbox list` / `outbox retry`; the exit code: 0 done, 1 nothing to do, 2 no outbox."""
    out = out or sys.stdout
    err = err or sys.stderr
    if settings.storage.backend == "postgres":
        return await _run_shared(args, settings, out, err)
    path = outbox_path(settings)
    if not await asyncio.to_thread(path.exists):
        print(f"no outbox at {path} (nothing was ever queued there)", file=err)
        return 2
    lock: StoreLock | None = None
    sender = ""
    try:
        if args.outbox_command == "retry":
            lock, sender = await _bot_lock(settings)
        try:
            # repair=False: a damaged outbox is the bot's to move aside, never the CLI's.
            outbox = await Outbox.open(path, repair=False)
        except StoreError as exc:
            print(str(exc), file=err)
            return 2
        async with outbox:
            if args.outbox_command == "list":
                return await _list(outbox, args, out)
            return await _retry(outbox, args, out, err, sender=sender)
    finally:
        if lock is not None:
            await asyncio.to_thread(lock.release)
