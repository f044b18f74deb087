"""What the bot keeps about each user's own notices (``/notify``): the contract both backends keep.

Everything here is per Discord user, across guilds, and lives beside the results: in SQLite a file
of its own, ``<storage.path>/users.sqlite3`` (not the index: an index can be rebuilt from result
files, settings cannot), in PostgreSQL the ``users`` migration set's tables in the store's
database. Every write is durable when its call returns (settings, pending codes and the counters
survive kill -9).

What is stored, and why each piece:

- `ChannelSetting` per (user, via): the target (an e-mail address, a webhook URL, nothing for a
  DM), the events and workflows chosen, whether it is on, why it was turned off, and the count of
  consecutive failed deliveries (a webhook is turned off after `webhook_max_failures`).
- The user's webhook signing secret (``whsec_...``): needed to sign every callback, so it is
  stored as it is; it is shown to the user once and never logged.
- One pending e-mail verification per user: the address, a hash of the 6-digit code (never the
  code), when it expires, the wrong attempts so far, and the events and workflows the user asked
  for with the address (the channel is made of them at ``/notify verify``, after a restart too).
- The codes sent, as (user, sha256 of the lowercased address, time): the daily limits per user and
  per address count them. `forget` removes the user's rows; an address's count stays only as its
  hash, so a forgotten user cannot use `forget` to mail an address more often.
- Notices sent per user per day (UTC), for `per_user_daily_limit`.
- Notes owed to the user ("your e-mail address refused mail, so e-mail notices are off"), shown by
  DM or on their next command, then removed.

`forget` deletes every row naming the user and says how many of each kind went (`FORGET_KINDS`,
every kind present, 0 included), in one transaction: a crash leaves all of it or none. The codes
sent are the one exception to "deleted": their rows lose the user (``user_id`` set to NULL) and
keep the address hash and the time, so the per-address limit still counts them; they name nobody
and are counted as deleted. Rows of the codes sent older than `CODES_SENT_KEPT_S`, and notice
counts of days more than `NOTICE_DAYS_KEPT` before the day counted, are pruned as new ones are
written: the limits are daily and never look further back.

`open_user_settings` opens the backend ``storage.backend`` names (see its docstring).

Moving the settings between backends (``notifier store migrate``): the SQLite backend's
`read_dump` gives every row of every kind as plain values (`SettingsDump`, the columns
`DUMP_COLUMNS` names; read only), and the PostgreSQL backend's `load` compares them with what it holds and copies the missing
ones. The kinds are `FORGET_KINDS`. A row is known by its key (`DUMP_KEY_COLUMNS`: the user, and
the via or the day where a user has several); the codes sent and the notes are logs with no key
that survives a copy (their ids are each database's own), so one of those is "the same row" when
every column matches, counted with repeats.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..config import postgres_dsn_of, postgres_extra_missing

if TYPE_CHECKING:
    from ..config import StorageSettings

__all__ = [
    "CODES_SENT_KEPT_S",
    "DUMP_COLUMNS",
    "DUMP_KEY_COLUMNS",
    "FORGET_KINDS",
    "NOTICE_DAYS_KEPT",
    "USERS_FILE",
    "ChannelSetting",
    "ForgetReport",
    "PendingCode",
    "SettingsDump",
    "UserSettings",
    "UserSettingsStore",
    "UserSummary",
    "export_document",
    "mask_address",
    "mask_secret",
    "oldest_notice_day",
    "open_user_settings",
    "user_summaries",
]

# The SQLite file under storage.path (beside the index, not in it: see the module docstring).
USERS_FILE: Final = "users.sqlite3"
# What `forget` reports, in this order, under these names (the command and the CLI show them).
FORGET_KINDS: Final = (
    "channels",
    "webhook secret",
    "pending codes",
    "codes sent",
    "notice counts",
    "notes",
)
# Each kind's columns, in the order a `SettingsDump` row holds them (see the module docstring):
# user ids are ints (None for a forgotten user's codes sent), events and workflows tuples of
# str, `enabled` a bool, times floats.
DUMP_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "channels": (
        "user_id",
        "via",
        "target",
        "events",
        "workflows",
        "enabled",
        "disabled_reason",
        "failures",
        "updated_at",
    ),
    "webhook secret": ("user_id", "webhook_secret", "updated_at"),
    "pending codes": (
        "user_id",
        "address",
        "code_hash",
        "expires_at",
        "attempts",
        "events",
        "workflows",
        "created_at",
    ),
    "codes sent": ("user_id", "address_hash", "sent_at"),
    "notice counts": ("user_id", "day", "count"),
    "notes": ("user_id", "text", "created_at"),
}
# How many leading columns of a kind's row are its key; None: a log, no key (every column is).
DUMP_KEY_COLUMNS: Final[Mapping[str, int | None]] = {
    "channels": 2,
    "webhook secret": 1,
    "pending codes": 1,
    "codes sent": None,
    "notice counts": 2,
    "notes": None,
}
# The limits count a day back; rows twice that old are pruned as new ones are written.
CODES_SENT_KEPT_S: Final = 2 * 86_400.0
NOTICE_DAYS_KEPT: Final = 2


@dataclass(frozen=True, slots=True)
class ChannelSetting:
    """One way a user hears about their workflows: ``via`` is ``dm``, ``email`` or ``webhook``."""

    via: str
    target: str  # the verified address, the webhook URL, "" for a DM
    events: tuple[str, ...]  # event values ("completed", ...)
    workflows: tuple[str, ...] = ()  # command names without "/"; empty means every workflow
    enabled: bool = True
    disabled_reason: str = ""  # why it was turned off (shown to the user), "" while on
    failures: int = 0  # consecutive failed deliveries
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class PendingCode:
    """An e-mail verification under way: the address is stored only once the code matches."""

    address: str
    code_hash: str
    expires_at: float
    attempts: int = 0  # wrong codes so far
    # What the channel will be for, as asked with the address; no events: the defaults.
    events: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()  # command names without "/"; empty means every workflow


@dataclass(frozen=True, slots=True)
class UserSettings:
    user_id: int
    channels: Mapping[str, ChannelSetting] = field(default_factory=dict)
    webhook_secret: str | None = None


@dataclass(frozen=True, slots=True)
class SettingsDump:
    """Every row of a settings store, by kind (`FORGET_KINDS`), each a tuple of the columns
    `DUMP_COLUMNS` names: what the SQLite backend's `read_dump` gives and the PostgreSQL
    backend's `load` takes. Settings are small (a few rows per user who used ``/notify``; the codes sent
    and the notice counts are pruned to two days), so they are held in memory whole."""

    rows: Mapping[str, Sequence[tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class UserSummary:
    """One line of ``notifier users list``."""

    user_id: int
    vias: tuple[str, ...]  # channels stored (on or off)
    pending_code: bool
    notes: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """What `forget` deleted, by kind (``{"channels": 2, "pending codes": 1, ...}``)."""

    deleted: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


class UserSettingsStore(Protocol):
    """The narrow methods both backends offer (`sqlite.user_settings`, `postgres.user_settings`).

    Times are Unix seconds passed in by the caller (tests move the clock). Every method raises
    StoreError (naming the file or the server) when the storage fails; none raises for a user that
    has nothing stored (they read as empty)."""

    async def close(self) -> None: ...

    async def get(self, user_id: int) -> UserSettings: ...

    async def put_channel(self, user_id: int, setting: ChannelSetting, *, now: float) -> None:
        """Insert or replace the user's channel ``setting.via`` (failures reset to 0)."""

    async def disable_channel(self, user_id: int, via: str, reason: str, *, now: float) -> bool:
        """Turn the channel off with `reason`; False if the user has no such channel."""

    async def remove_channel(self, user_id: int, via: str) -> bool: ...

    async def record_failure(self, user_id: int, via: str, *, now: float) -> int:
        """One more consecutive failed delivery; the count now (0 if there is no channel). The
        channel's `updated_at` becomes `now`."""

    async def reset_failures(self, user_id: int, via: str) -> None: ...

    async def set_webhook_secret(self, user_id: int, secret: str, *, now: float) -> None: ...

    async def put_code(self, user_id: int, code: PendingCode, *, now: float) -> None:
        """Start (or restart) the user's verification; replaces a pending one."""

    async def pending_code(self, user_id: int) -> PendingCode | None: ...

    async def count_wrong_code(self, user_id: int) -> int:
        """One more wrong attempt at the pending code; the attempts now (0 if none pending)."""

    async def delete_code(self, user_id: int) -> None: ...

    async def log_code_sent(self, user_id: int, address_hash: str, *, now: float) -> None: ...

    async def codes_sent_since(
        self, *, since: float, user_id: int | None = None, address_hash: str | None = None
    ) -> int:
        """Codes sent at or after `since` to this user, or to this address (across users, a
        forgotten user's codes included); both given: to this user at this address."""

    async def count_notice(self, user_id: int, day: str) -> int:
        """Count one notice for the user on `day` (``YYYY-MM-DD``, UTC); the day's count now."""

    async def add_note(self, user_id: int, text: str, *, now: float) -> None: ...

    async def take_notes(self, user_id: int) -> list[str]:
        """The notes owed to the user, oldest first, removed as they are read."""

    async def users(self) -> Sequence[UserSummary]: ...

    async def export(self, user_id: int) -> dict[str, Any]:
        """Everything stored about the user, as plain JSON-able values (``users show``): the
        webhook secret and the code hash masked."""

    async def forget(self, user_id: int) -> ForgetReport: ...


def oldest_notice_day(day: str) -> str:
    """The oldest day whose notice counts are kept when `day` (``YYYY-MM-DD``) is counted: the
    backends prune the days before it. ValueError if `day` is not such a date."""
    oldest = datetime.date.fromisoformat(day) - datetime.timedelta(days=NOTICE_DAYS_KEPT)
    return oldest.isoformat()


def mask_address(address: str) -> str:
    """An e-mail address as it may be shown: ``a***@b.c`` (the first character of the local part,
    the domain); ``***`` for anything without both."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_secret(secret: str | None) -> str | None:
    """A webhook secret as it may be shown: its ``whsec_`` prefix and nothing of the key."""
    if secret is None:
        return None
    return "whsec_***" if secret.startswith("whsec_") else "***"


def user_summaries(
    latest: Iterable[Sequence[Any]],
    channel_vias: Iterable[Sequence[Any]],
    pending_users: Iterable[Sequence[Any]],
    note_counts: Iterable[Sequence[Any]],
) -> list[UserSummary]:
    """``notifier users list`` from the four reads each backend makes, as rows: (user, latest
    time) per user in order, (user, via) per channel, (user,) per pending code, (user, count)
    of notes."""
    vias: dict[int, list[str]] = {}
    for user_id, via in channel_vias:
        vias.setdefault(int(user_id), []).append(str(via))
    pending = {int(row[0]) for row in pending_users}
    notes = {int(user_id): int(count) for user_id, count in note_counts}
    return [
        UserSummary(
            user_id=int(user_id),
            vias=tuple(vias.get(int(user_id), ())),
            pending_code=int(user_id) in pending,
            notes=notes.get(int(user_id), 0),
            updated_at=float(at),
        )
        for user_id, at in latest
    ]


def export_document(
    user_id: int,
    *,
    channels: Iterable[ChannelSetting],
    webhook_secret: str | None,
    pending: PendingCode | None,
    codes_sent_at: Iterable[float],
    notice_counts: Mapping[str, int],
    notes: Iterable[tuple[str, float]],
) -> dict[str, Any]:
    """What `UserSettingsStore.export` returns, built the same way by both backends: every
    channel with its target, the secret masked, the pending code without its hash and with its
    address masked, the times codes were sent, the notice counts by day and the notes owed."""
    return {
        "user_id": user_id,
        "channels": [
            {
                "via": c.via,
                "target": c.target,
                "events": list(c.events),
                "workflows": list(c.workflows),
                "enabled": c.enabled,
                "disabled_reason": c.disabled_reason,
                "failures": c.failures,
                "updated_at": c.updated_at,
            }
            for c in sorted(channels, key=lambda c: c.via)
        ],
        "webhook_secret": mask_secret(webhook_secret),
        "pending_code": None
        if pending is None
        else {
            "address": mask_address(pending.address),
            "expires_at": pending.expires_at,
            "attempts": pending.attempts,
            "events": list(pending.events),
            "workflows": list(pending.workflows),
        },
        "codes_sent": sorted(codes_sent_at),
        "notice_counts": dict(sorted(notice_counts.items())),
        "notes": [{"text": text, "created_at": at} for text, at in notes],
    }


async def open_user_settings(settings: StorageSettings) -> UserSettingsStore:
    """The users' settings of the backend ``settings.backend`` names: the SQLite file
    `USERS_FILE` under ``storage.path`` (`sqlite.user_settings`), or the ``users`` migration
    set's tables in the PostgreSQL database at ``storage.postgres_dsn`` on a small pool of their
    own (`postgres.user_settings`, migrated at open). Both are imported here, when asked for:
    psycopg is an optional extra, and neither backend is needed to read this contract.

    ConfigError naming the field when PostgreSQL is asked for without its extra; StoreError
    when the file or the database cannot be opened (a damaged file, a schema newer than this
    program's)."""
    if settings.backend != "postgres":
        from .sqlite.user_settings import SQLiteUserSettings

        return await SQLiteUserSettings.open(settings.path / USERS_FILE)
    dsn = postgres_dsn_of(settings)
    try:
        from .postgres.user_settings import PostgresUserSettings
    except ModuleNotFoundError as exc:
        if (error := postgres_extra_missing(exc)) is None:
            raise
        raise error from None
    return await PostgresUserSettings.open(dsn)
