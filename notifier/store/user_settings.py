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
  code), when it expires and the wrong attempts so far.
- The codes sent, as (user, sha256 of the lowercased address, time): the daily limits per user and
  per address count them. `forget` removes the user's rows; an address's count stays only as its
  hash, so a forgotten user cannot use `forget` to mail an address more often.
- Notices sent per user per day (UTC), for `per_user_daily_limit`.
- Notes owed to the user ("your e-mail address refused mail, so e-mail notices are off"), shown by
  DM or on their next command, then removed.

`forget` deletes every row naming the user and says how many of each kind went.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "ChannelSetting",
    "ForgetReport",
    "PendingCode",
    "UserSettings",
    "UserSettingsStore",
    "UserSummary",
]


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


@dataclass(frozen=True, slots=True)
class UserSettings:
    user_id: int
    channels: Mapping[str, ChannelSetting] = field(default_factory=dict)
    webhook_secret: str | None = None


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
        """One more consecutive failed delivery; the count now (0 if there is no channel)."""

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
        """Codes sent at or after `since` to this user, or to this address (across users)."""

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
