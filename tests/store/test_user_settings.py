"""Users' own notification settings (``/notify``), on every backend (tests/store/conftest.py: the
SQLite file ``users.sqlite3`` in tmp_path, and a PostgreSQL database of the test's own), opened as
the bot opens them (`open_user_settings`): what is stored reads back after a reopen, the counters
count, notes are taken once, `forget` removes everything naming the user (and says what) while
the per-address code limit still holds, and a schema newer than the program, or a damaged file,
is refused in words with the file left where it was."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import textwrap
from collections.abc import AsyncIterator

import psycopg
import pytest

from notifier.config import StorageSettings
from notifier.errors import StoreError
from notifier.store.user_settings import (
    FORGET_KINDS,
    USERS_FILE,
    ChannelSetting,
    PendingCode,
    UserSettingsStore,
    UserSummary,
    open_user_settings,
)

from .support import run_killed

NOW = 1_800_000_000.0
DAY_S = 86_400.0
ALICE, BOB = 123_456_789_012_345_678, 987_654_321_098_765_432  # Discord snowflakes (> 2**53)
EMAIL = ChannelSetting("email", "alice@example.com", ("completed", "failed"))
HOOK = ChannelSetting("webhook", "https://hooks.example/alice", ("completed",), ("autointel",))
DM = ChannelSetting("dm", "", ("completed", "failed", "persisted"))
CODE = PendingCode(
    "alice.new@example.com",
    "sha256:" + "ab" * 32,
    NOW + 900,
    events=("completed", "handoff"),
    workflows=("autointel",),
)
SECRET = "whsec_c2VjcmV0LWtleS1vZi1hbGljZQ=="
ADDRESS_HASH = "e3" * 32


@pytest.fixture
async def users(store_settings: StorageSettings) -> AsyncIterator[UserSettingsStore]:
    opened = await open_user_settings(store_settings)
    yield opened
    await opened.close()


async def _alice_everything(users: UserSettingsStore) -> None:
    for setting in (EMAIL, HOOK, DM):
        await users.put_channel(ALICE, setting, now=NOW)
    await users.set_webhook_secret(ALICE, SECRET, now=NOW)
    await users.put_code(ALICE, CODE, now=NOW)
    await users.log_code_sent(ALICE, ADDRESS_HASH, now=NOW)
    await users.count_notice(ALICE, "2027-01-15")
    await users.add_note(ALICE, "your e-mail address refused mail", now=NOW)


async def test_settings_read_back_after_a_reopen(store_settings: StorageSettings) -> None:
    first = await open_user_settings(store_settings)
    try:
        await _alice_everything(first)
    finally:
        await first.close()

    again = await open_user_settings(store_settings)
    try:
        settings = await again.get(ALICE)
        code = await again.pending_code(ALICE)
        listed = await again.users()
        notes = await again.take_notes(ALICE)
    finally:
        await again.close()

    stamped = {s.via: dataclasses.replace(s, updated_at=NOW) for s in (EMAIL, HOOK, DM)}
    assert dict(settings.channels) == stamped
    assert settings.webhook_secret == SECRET
    assert code == CODE
    assert listed == [UserSummary(ALICE, ("dm", "email", "webhook"), True, 1, NOW)]
    assert notes == ["your e-mail address refused mail"]


_KILLED_AFTER_WRITING = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from notifier.config import StorageSettings
    from notifier.store.user_settings import ChannelSetting, PendingCode, open_user_settings

    async def main() -> None:
        backend, dsn = sys.argv[2], sys.argv[3] or None
        settings = StorageSettings(path=Path(sys.argv[1]), backend=backend, postgres_dsn=dsn)
        users = await open_user_settings(settings)
        await users.put_channel(7, ChannelSetting("email", "a@b.example", ("completed",)), now=1.0)
        await users.put_code(7, PendingCode("c@d.example", "hash", 900.0), now=1.0)
        await users.count_wrong_code(7)
        os.kill(os.getpid(), signal.SIGKILL)  # no close: only what was committed

    asyncio.run(main())
    """
)


async def test_what_a_call_stored_survives_kill_9(store_settings: StorageSettings) -> None:
    await run_killed(_KILLED_AFTER_WRITING, store_settings)

    users = await open_user_settings(store_settings)
    try:
        channels = (await users.get(7)).channels
        code = await users.pending_code(7)
    finally:
        await users.close()

    assert channels["email"].target == "a@b.example"
    assert code == PendingCode("c@d.example", "hash", 900.0, attempts=1)


async def test_a_user_with_nothing_stored_reads_as_empty(users: UserSettingsStore) -> None:
    settings = await users.get(BOB)

    assert dict(settings.channels) == {}
    assert settings.webhook_secret is None
    assert await users.pending_code(BOB) is None
    assert await users.take_notes(BOB) == []
    assert await users.disable_channel(BOB, "dm", "closed", now=NOW) is False
    assert await users.remove_channel(BOB, "dm") is False
    assert await users.record_failure(BOB, "webhook", now=NOW) == 0
    assert await users.count_wrong_code(BOB) == 0
    assert await users.users() == []


async def test_a_channel_is_replaced_turned_off_and_removed(users: UserSettingsStore) -> None:
    await users.put_channel(ALICE, HOOK, now=NOW)
    assert await users.record_failure(ALICE, "webhook", now=NOW + 1) == 1
    assert await users.record_failure(ALICE, "webhook", now=NOW + 2) == 2

    moved = ChannelSetting("webhook", "https://hooks.example/new", ("failed",))
    await users.put_channel(ALICE, moved, now=NOW + 3)  # failures start again
    replaced = (await users.get(ALICE)).channels["webhook"]
    assert await users.disable_channel(ALICE, "webhook", "20 failed deliveries", now=NOW + 4)
    disabled = (await users.get(ALICE)).channels["webhook"]
    assert await users.remove_channel(ALICE, "webhook")

    assert (replaced.target, replaced.events, replaced.failures) == (moved.target, ("failed",), 0)
    assert (disabled.enabled, disabled.disabled_reason) == (False, "20 failed deliveries")
    assert dict((await users.get(ALICE)).channels) == {}


async def test_counters_count_and_reset(users: UserSettingsStore) -> None:
    await users.put_channel(ALICE, HOOK, now=NOW)
    await users.put_code(ALICE, CODE, now=NOW)

    notices = [await users.count_notice(ALICE, "2027-01-15") for _ in range(3)]
    other_day = await users.count_notice(ALICE, "2027-01-16")
    bobs = await users.count_notice(BOB, "2027-01-16")
    wrong = [await users.count_wrong_code(ALICE) for _ in range(2)]
    failures = [await users.record_failure(ALICE, "webhook", now=NOW) for _ in range(3)]
    await users.reset_failures(ALICE, "webhook")

    assert notices == [1, 2, 3]
    assert (other_day, bobs) == (1, 1)
    assert wrong == [1, 2]
    assert (await users.pending_code(ALICE)) == dataclasses.replace(CODE, attempts=2)
    assert failures == [1, 2, 3]
    assert (await users.get(ALICE)).channels["webhook"].failures == 0


async def test_old_notice_counts_and_codes_sent_are_pruned(users: UserSettingsStore) -> None:
    await users.count_notice(ALICE, "2027-01-10")
    await users.log_code_sent(ALICE, ADDRESS_HASH, now=NOW)

    await users.count_notice(ALICE, "2027-01-15")
    await users.log_code_sent(ALICE, ADDRESS_HASH, now=NOW + 5 * DAY_S)
    exported = await users.export(ALICE)

    assert exported["notice_counts"] == {"2027-01-15": 1}
    assert exported["codes_sent"] == [NOW + 5 * DAY_S]


async def test_codes_sent_are_counted_per_user_and_per_address(users: UserSettingsStore) -> None:
    other_address = "7f" * 32
    await users.log_code_sent(ALICE, ADDRESS_HASH, now=NOW - DAY_S - 1)  # yesterday's
    await users.log_code_sent(ALICE, ADDRESS_HASH, now=NOW)
    await users.log_code_sent(ALICE, other_address, now=NOW + 1)
    await users.log_code_sent(BOB, ADDRESS_HASH, now=NOW + 2)

    since = NOW - DAY_S
    assert await users.codes_sent_since(since=since, user_id=ALICE) == 2
    assert await users.codes_sent_since(since=since, user_id=BOB) == 1
    assert await users.codes_sent_since(since=since, address_hash=ADDRESS_HASH) == 2
    assert await users.codes_sent_since(since=since - 2, address_hash=ADDRESS_HASH) == 3
    assert await users.codes_sent_since(since=since, user_id=ALICE, address_hash=other_address) == 1


async def test_notes_are_taken_once_oldest_first(users: UserSettingsStore) -> None:
    await users.add_note(ALICE, "e-mail notices are off", now=NOW)
    await users.add_note(BOB, "your DMs are closed", now=NOW)
    await users.add_note(ALICE, "your webhook was turned off", now=NOW + 1)

    taken = await users.take_notes(ALICE)

    assert taken == ["e-mail notices are off", "your webhook was turned off"]
    assert await users.take_notes(ALICE) == []
    assert await users.take_notes(BOB) == ["your DMs are closed"]


async def test_export_masks_the_secret_and_the_code(users: UserSettingsStore) -> None:
    await _alice_everything(users)

    exported = await users.export(ALICE)

    text = json.dumps(exported)
    assert SECRET.removeprefix("whsec_") not in text
    assert CODE.code_hash not in text and CODE.address not in text
    assert exported["webhook_secret"] == "whsec_***"
    assert exported["pending_code"] == {
        "address": "a***@example.com",
        "expires_at": CODE.expires_at,
        "attempts": 0,
        "events": ["completed", "handoff"],
        "workflows": ["autointel"],
    }
    assert [c["target"] for c in exported["channels"]] == ["", EMAIL.target, HOOK.target]
    assert exported["notes"] == [{"text": "your e-mail address refused mail", "created_at": NOW}]
    assert exported["notice_counts"] == {"2027-01-15": 1}
    assert exported["codes_sent"] == [NOW]


async def test_forget_removes_every_row_naming_the_user_and_only_theirs(
    users: UserSettingsStore,
) -> None:
    await _alice_everything(users)
    await users.count_notice(ALICE, "2027-01-15")
    await users.put_channel(BOB, DM, now=NOW)
    await users.log_code_sent(BOB, ADDRESS_HASH, now=NOW)
    await users.add_note(BOB, "your DMs are closed", now=NOW)
    bob_before = await users.export(BOB)

    report = await users.forget(ALICE)
    again = await users.forget(ALICE)

    assert dict(report.deleted) == {
        "channels": 3,
        "webhook secret": 1,
        "pending codes": 1,
        "codes sent": 1,
        "notice counts": 1,
        "notes": 1,
    }
    assert report.total == 8
    assert dict(again.deleted) == dict.fromkeys(FORGET_KINDS, 0)
    assert await users.export(ALICE) == {
        "user_id": ALICE,
        "channels": [],
        "webhook_secret": None,
        "pending_code": None,
        "codes_sent": [],
        "notice_counts": {},
        "notes": [],
    }
    assert [u.user_id for u in await users.users()] == [BOB]
    assert await users.export(BOB) == bob_before
    # The address keeps its count: forgetting cannot buy more codes to one inbox.
    assert await users.codes_sent_since(since=NOW - DAY_S, address_hash=ADDRESS_HASH) == 2
    assert await users.codes_sent_since(since=NOW - DAY_S, user_id=ALICE) == 0


async def test_a_newer_schema_is_refused_naming_the_version(
    backend: str, store_settings: StorageSettings
) -> None:
    await (await open_user_settings(store_settings)).close()
    if backend == "sqlite":
        with sqlite3.connect(store_settings.path / USERS_FILE) as db:
            db.execute("PRAGMA user_version = 7")
        db.close()
    else:
        assert store_settings.postgres_dsn is not None
        dsn = store_settings.postgres_dsn.get_secret_value()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE notifier_schema_versions SET version = 7 WHERE component = 'users'"
            )

    with pytest.raises(StoreError, match=r"version 7 is newer than this program's 1") as caught:
        await open_user_settings(store_settings)

    if backend == "sqlite":
        assert str(store_settings.path / USERS_FILE) in str(caught.value)


@pytest.mark.sqlite_only
async def test_a_damaged_file_is_refused_and_left_in_place(
    backend: str, store_settings: StorageSettings
) -> None:
    path = store_settings.path / USERS_FILE
    path.parent.mkdir(parents=True)
    damaged = b"these are not the settings you are looking for\n" * 200
    path.write_bytes(damaged)

    with pytest.raises(StoreError, match="is damaged") as caught:
        await open_user_settings(store_settings)

    assert str(path) in str(caught.value)
    assert path.read_bytes() == damaged
    assert sorted(p.name for p in path.parent.iterdir()) == [USERS_FILE]
