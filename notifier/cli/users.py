"""`python -m notifier users ...`: what the bot keeps about each user's own notices (``/notify``),
for an operator's data requests.

    users list                     one line per user: id, channels, pending code, notes owed
    users show USER_ID [--json]    everything stored about the user (secret and code masked)
    users forget USER_ID           delete it all, and every outbox notice naming the user

The settings are where ``storage.backend`` keeps them: ``<storage.path>/users.sqlite3``, or the
PostgreSQL database. Safe beside a running bot: every write is one transaction, and a notice
forgotten while it is being sent is not retried (see `Outbox.forget_user`). With SQLite, `list`
and `show` never create the file: no file means nothing is stored.

"Nothing is stored" is an answer, not an error: `show` and `forget` of a user with no rows say so
and exit 0. Exit 2 for a malformed user id or a configuration that cannot be used, 1 for storage
that cannot be read (`notifier.cli.main` turns ConfigError and StoreError into those).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO

from ..config import Settings
from ..fanout.outbox import open_outbox, outbox_path
from ..store.user_settings import (
    USERS_FILE,
    UserSettingsStore,
    export_document,
    open_user_settings,
)
from .common import EXIT_OK, utc_minute

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["register", "run"]

# Discord ids are snowflakes: positive 64-bit integers.
_MAX_USER_ID: Final = 2**63 - 1


def _user_id(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Discord user id (digits)") from None
    if not 0 < value <= _MAX_USER_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Discord user id (out of range)")
    return value


def register(subparsers: SubParsers) -> None:
    """Add `users list|show|forget` to the CLI's subparsers."""
    users = subparsers.add_parser(
        "users",
        help="what is stored about users' own notices (/notify): list, show, forget",
        description=(
            "What the bot keeps about each user's own notices (/notify): their channels, "
            "webhook secret (masked), pending e-mail code, the codes sent, notice counts and "
            "notes owed. For data requests: show it, or forget it."
        ),
    )
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="one line per user with anything stored")
    show = actions.add_parser("show", help="everything stored about one user")
    show.add_argument("user_id", type=_user_id, metavar="USER_ID", help="the Discord user id")
    show.add_argument("--json", action="store_true", help="as JSON, as the store exports it")
    forget = actions.add_parser(
        "forget",
        help="delete everything stored about one user, and the outbox notices naming them",
    )
    forget.add_argument("user_id", type=_user_id, metavar="USER_ID", help="the Discord user id")
    users.set_defaults(handler=run)


def _nothing_stored(exported: Mapping[str, Any]) -> bool:
    return not any(value for key, value in exported.items() if key != "user_id")


def export_text(exported: Mapping[str, Any]) -> str:
    """`users show`: the store's export as lines an operator reads (times in UTC)."""
    user_id = exported.get("user_id")
    if _nothing_stored(exported):
        return f"nothing is stored about user {user_id}"
    lines = [f"user {user_id}"]
    channels = exported.get("channels") or []
    lines.append(f"channels: {len(channels)}")
    for channel in channels:
        state = "on" if channel.get("enabled") else "off"
        target = channel.get("target") or "(their DMs)"
        events = ", ".join(channel.get("events") or []) or "-"
        workflows = ", ".join(channel.get("workflows") or []) or "every workflow"
        lines.append(f"  {channel.get('via')}: {state}, {target}")
        lines.append(f"    events: {events}; workflows: {workflows}")
        detail = f"    failed deliveries in a row: {channel.get('failures', 0)}"
        detail += f"; changed {utc_minute(channel.get('updated_at'))}"
        lines.append(detail)
        if channel.get("disabled_reason"):
            lines.append(f"    turned off: {channel['disabled_reason']}")
    secret = exported.get("webhook_secret")
    lines.append(f"webhook secret: {secret or 'none'}")
    pending = exported.get("pending_code")
    if pending:
        lines.append(
            f"pending e-mail code: for {pending.get('address')}, expires "
            f"{utc_minute(pending.get('expires_at'))}, {pending.get('attempts', 0)} wrong attempt(s)"
        )
    else:
        lines.append("pending e-mail code: none")
    sent = exported.get("codes_sent") or []
    last = f" (last {utc_minute(max(sent))})" if sent else ""
    lines.append(f"codes sent (kept for the daily limits): {len(sent)}{last}")
    counts = exported.get("notice_counts") or {}
    listed = ", ".join(f"{day}: {count}" for day, count in counts.items()) or "none"
    lines.append(f"notices counted per day (UTC): {listed}")
    notes = exported.get("notes") or []
    lines.append(f"notes owed: {len(notes)}")
    lines += [f"  {utc_minute(n.get('created_at'))}  {n.get('text', '')}" for n in notes]
    return "\n".join(lines)


async def _list(store: UserSettingsStore, out: TextIO) -> int:
    summaries = await store.users()
    print(f"{'USER':<20}  {'CHANNELS':<18}  {'CODE':<7}  {'NOTES':>5}  CHANGED (UTC)", file=out)
    for summary in summaries:
        channels = ",".join(summary.vias) or "-"
        code = "pending" if summary.pending_code else "-"
        print(
            f"{summary.user_id:<20}  {channels:<18}  {code:<7}  {summary.notes:>5}  "
            f"{utc_minute(summary.updated_at)}",
            file=out,
        )
    print(f"({len(summaries)} user(s))", file=out)
    return EXIT_OK


def _show(exported: Mapping[str, Any], *, as_json: bool, out: TextIO) -> int:
    if as_json:
        print(json.dumps(exported, indent=2, ensure_ascii=False), file=out)
    else:
        print(export_text(exported), file=out)
    return EXIT_OK


async def _forget_outbox(settings: Settings, user_id: int) -> int:
    """Delete the outbox's notices naming the user; 0 when there is no outbox (SQLite: none was
    ever queued, and none is created here)."""
    sqlite = settings.storage.backend != "postgres"
    if sqlite and not await asyncio.to_thread(outbox_path(settings).exists):
        return 0
    # repair=False: a damaged outbox is the bot's to move aside, never the CLI's.
    outbox = await open_outbox(settings, repair=False)
    async with outbox:
        return await outbox.forget_user(user_id)


async def _forget(
    store: UserSettingsStore | None, settings: Settings, user_id: int, out: TextIO
) -> int:
    deleted = await store.forget(user_id) if store is not None else None
    notices = await _forget_outbox(settings, user_id)
    if (deleted is None or not deleted.total) and not notices:
        print(f"nothing was stored about user {user_id}; nothing deleted", file=out)
        return EXIT_OK
    kinds = ", ".join(f"{n} {kind}" for kind, n in deleted.deleted.items()) if deleted else ""
    print(f"forgot user {user_id}: {kinds or 'no settings'}; {notices} outbox notice(s)", file=out)
    return EXIT_OK


def _empty_export(user_id: int) -> dict[str, Any]:
    """What `export` gives for a user with nothing stored (SQLite with no file yet)."""
    return export_document(
        user_id,
        channels=(),
        webhook_secret=None,
        pending=None,
        codes_sent_at=(),
        notice_counts={},
        notes=(),
    )


async def _open_existing(settings: Settings) -> UserSettingsStore | None:
    """The users' settings, or None for SQLite with no file yet: nothing is stored, and an
    operator's look (or a forget) creates nothing."""
    storage = settings.storage
    if storage.backend != "postgres":
        path = storage.path / USERS_FILE
        if not await asyncio.to_thread(path.exists):
            return None
    return await open_user_settings(storage)


async def run(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> int:
    """Run `users list|show|forget`; the exit code (see the module docstring)."""
    out = out or sys.stdout
    store = await _open_existing(settings)
    try:
        if args.users_command == "list":
            if store is None:
                where = settings.storage.path / USERS_FILE
                print(f"no users' settings at {where} (nobody has used /notify there)", file=out)
                return EXIT_OK
            return await _list(store, out)
        if args.users_command == "show":
            user_id = args.user_id
            exported = _empty_export(user_id) if store is None else await store.export(user_id)
            return _show(exported, as_json=args.json, out=out)
        return await _forget(store, settings, args.user_id, out)
    finally:
        if store is not None:
            await store.close()
