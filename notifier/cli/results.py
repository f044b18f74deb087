"""`python -m notifier results ...`: list, show, export and purge stored results.

    results list [--user ID] [--url TEXT] [--status S] [--since 7d] [--until DATE] ...
    results show ID | results export ID [--format json|md] [--output FILE]
    results purge --older-than 30d [--dry-run] [--include-undelivered]

`show` and `export` render the stored document, exactly as `/retrieve_results` and the bot's own
delivery do (`notifier.discord.embeds`).

Beside a running bot: `list`, `show`, `export` and `purge --dry-run` only read, and work. A real
`purge` takes the store's lock (`notifier.store.store_lock`) and, while the bot holds it, refuses
in one line naming the bot's PID and deletes nothing: files deleted under a running bot could be
the result it is delivering or rendering. Retention, in the bot, purges by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..config import Settings, StorageSettings
from ..discord.embeds import export_json, export_markdown, render_result, rendered_as_text
from ..errors import InvalidWorkflowId, StoreError, StoreLocked
from ..metrics import ORPHANED_RESULTS_RETRIEVED
from ..records import (
    RecordedStep,
    StoredResult,
    WorkflowRecord,
    WorkflowStatus,
    validate_workflow_id,
)
from ..store import ResultQuery, ResultStore
from .common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    parse_duration_s,
    parse_moment,
    utc_minute,
)

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["open_store", "register"]

_URL_COLUMN_MAX: Final = 48


def _workflow_id(text: str) -> str:
    try:
        return validate_workflow_id(text)
    except InvalidWorkflowId as exc:
        raise CommandError(f"invalid workflow id: {exc}", EXIT_USAGE) from None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the store ----------------------------------------------------------------------------------


async def open_store(storage: StorageSettings, *, exclusive: bool = False) -> ResultStore:
    """Open an existing store for an operator command (never creates one at a mistyped path).
    `exclusive`: take the store's lock (commands that delete); beside a running bot that is a
    one-line refusal naming it."""
    if not await asyncio.to_thread(storage.path.is_dir):
        raise CommandError(f"no result store at {storage.path} (storage.path)", EXIT_NOT_FOUND)
    try:
        return await ResultStore.open(storage, maintain=False, exclusive=exclusive)
    except StoreLocked as exc:
        holder = f"PID {exc.pid}" if exc.pid is not None else "PID unknown"
        raise CommandError(
            f"the bot ({holder}) holds {exc.path}: stop it, or leave old results to its "
            "retention (storage.retention_days); nothing was purged",
            EXIT_NOT_FOUND,
        ) from None


async def _existing_record(store: ResultStore, workflow_id: str) -> WorkflowRecord:
    record = await store.get(workflow_id)
    if record is None:
        ORPHANED_RESULTS_RETRIEVED.labels(success="false").inc()
        raise CommandError(f"no workflow {workflow_id}", EXIT_NOT_FOUND)
    return record


async def _stored(store: ResultStore, record: WorkflowRecord) -> StoredResult:
    try:
        document = await store.read_result(record.workflow_id)
    except StoreError as exc:
        ORPHANED_RESULTS_RETRIEVED.labels(success="false").inc()
        raise CommandError(str(exc), EXIT_NOT_FOUND) from None
    ORPHANED_RESULTS_RETRIEVED.labels(success="true").inc()
    return StoredResult(record, document)


# -- results ------------------------------------------------------------------------------------


async def _results_list(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC).timestamp()
    query = ResultQuery(
        user_id=args.user,
        url_contains=args.url,
        status=WorkflowStatus(args.status) if args.status else None,
        since=parse_moment(args.since, now=now) if args.since else None,
        until=parse_moment(args.until, now=now) if args.until else None,
        command=args.command,
        limit=args.limit,
        offset=args.offset,
    )
    async with await open_store(settings.storage) as store:
        records = await store.search(query)
        total = await store.count(query)
    if not records:
        print("no results match" if total == 0 else f"no results on this page ({total} in all)")
        return EXIT_OK
    header = ("id", "status", "command", "user", "url", "created (UTC)", "delivery")
    rows = [
        (
            r.workflow_id,
            r.status.value,
            r.command,
            str(r.user_id),
            _clip(" ".join(r.url.split()), _URL_COLUMN_MAX) or "-",
            utc_minute(r.created_at),
            r.delivery_state.value,
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    first = query.offset + 1
    print(f"\n{first}-{query.offset + len(records)} of {total}")
    return EXIT_OK


def _metadata_lines(record: WorkflowRecord) -> list[str]:
    delivery = record.delivery_state.value
    if record.delivered_via:
        delivery += f" ({record.delivered_via}, {utc_minute(record.delivered_at)} UTC)"
    rows = [
        ("workflow", record.workflow_id),
        ("status", record.status.value),
        ("command", record.command),
        ("options", " ".join(f"{k}={v}" for k, v in sorted(record.options.items())) or "-"),
        ("user", f"{record.user_id} {record.user_name}".strip()),
        ("guild", str(record.guild_id) if record.guild_id is not None else "-"),
        ("channel", str(record.channel_id) if record.channel_id is not None else "-"),
        ("created", f"{utc_minute(record.created_at)} UTC"),
        ("finished", f"{utc_minute(record.finished_at)} UTC" if record.finished_at else "-"),
        ("stage", f"{record.stage or '-'} ({record.progress:.0%})"),
        ("delivery", delivery),
        ("size", f"{record.size_bytes} bytes" if record.size_bytes is not None else "-"),
        ("error", record.error or "-"),
        ("resumes", str(record.resumes)),
    ]
    return [f"{name:<9} {value}" for name, value in rows]


def _step_lines(steps: list[RecordedStep]) -> list[str]:
    """The recorded steps (what a resume would not run again), one a line."""
    if not steps:
        return [f"{'steps':<9} -"]
    lines = [f"{'steps':<9} {len(steps)} recorded"]
    lines += [f"  {s.index:>4}  {s.name}  ({utc_minute(s.recorded_at)} UTC)" for s in steps]
    return lines


async def _results_show(args: argparse.Namespace, settings: Settings) -> int:
    workflow_id = _workflow_id(args.workflow_id)
    async with await open_store(settings.storage) as store:
        record = await _existing_record(store, workflow_id)
        print("\n".join(_metadata_lines(record)))
        print("\n".join(_step_lines(await store.steps(workflow_id))))
        if record.status in (WorkflowStatus.RUNNING, WorkflowStatus.LOST):
            print(f"\nno stored result (status {record.status.value})")
            return EXIT_OK if record.status is WorkflowStatus.RUNNING else EXIT_NOT_FOUND
        stored = await _stored(store, record)
    print()
    print(rendered_as_text(render_result(stored)))
    return EXIT_OK


async def _results_export(args: argparse.Namespace, settings: Settings) -> int:
    workflow_id = _workflow_id(args.workflow_id)
    async with await open_store(settings.storage) as store:
        record = await _existing_record(store, workflow_id)
        stored = await _stored(store, record)
    text = export_markdown(stored) if args.format == "md" else export_json(stored)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    output = Path(args.output)
    try:
        await asyncio.to_thread(output.write_text, text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror}", EXIT_NOT_FOUND) from None
    print(f"wrote {output} ({len(text.encode('utf-8'))} bytes)", file=sys.stderr)
    return EXIT_OK


async def _results_purge(args: argparse.Namespace, settings: Settings) -> int:
    older_than_s = parse_duration_s(args.older_than)
    async with await open_store(settings.storage, exclusive=not args.dry_run) as store:
        count = await store.purge(
            older_than_s=older_than_s,
            include_undelivered=args.include_undelivered,
            dry_run=args.dry_run,
        )
    cutoff = utc_minute(datetime.now(UTC).timestamp() - older_than_s)
    verb = "would purge" if args.dry_run else "purged"
    noun = "result" if count == 1 else "results"
    print(f"{verb} {count} {noun} finished before {cutoff} UTC")
    return EXIT_OK


def register(subparsers: SubParsers) -> None:
    """The ``results`` group: list, show, export, purge."""
    group = subparsers.add_parser("results", help="stored workflow results")
    commands = group.add_subparsers(title="commands", metavar="COMMAND")

    listing = commands.add_parser("list", help="search results, newest first")
    listing.add_argument("--user", type=int, metavar="ID", help="Discord user id")
    listing.add_argument("--url", metavar="SUBSTR", help="URL contains (plain text)")
    listing.add_argument("--status", choices=[s.value for s in WorkflowStatus])
    listing.add_argument("--command", metavar="NAME", help="workflow command, e.g. autointel")
    listing.add_argument("--since", metavar="WHEN", help="started at or after: 7d, 12h or ISO")
    listing.add_argument("--until", metavar="WHEN", help="started before: 7d, 12h or ISO")
    listing.add_argument("--limit", type=int, default=25, metavar="N")
    listing.add_argument("--offset", type=int, default=0, metavar="N")
    listing.set_defaults(handler=_results_list)

    show = commands.add_parser("show", help="metadata and the rendered result")
    show.add_argument("workflow_id", metavar="ID")
    show.set_defaults(handler=_results_show)

    export = commands.add_parser("export", help="the full result, to stdout or a file")
    export.add_argument("workflow_id", metavar="ID")
    export.add_argument("--format", choices=("json", "md"), default="json")
    export.add_argument("--output", metavar="PATH", help="write here instead of stdout")
    export.set_defaults(handler=_results_export)

    purge = commands.add_parser(
        "purge",
        help="delete results that finished long ago (refused while the bot runs)",
        description=(
            "Delete results (file, delivery mark and index row) that finished before the cutoff, "
            "whatever the clock check of the bot's retention says. It takes the store's lock: "
            "while the bot runs (it holds the lock) a purge is refused and deletes nothing; "
            "--dry-run only counts and works beside it."
        ),
    )
    purge.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d")
    purge.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    purge.add_argument(
        "--include-undelivered",
        action="store_true",
        help="also results never delivered (kept by default)",
    )
    purge.set_defaults(handler=_results_purge)
