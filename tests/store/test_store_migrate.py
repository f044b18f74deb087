"""`python -m notifier store migrate --from sqlite --to postgres` as an operator runs it: a real
process copying a real SQLite store and outbox into a real PostgreSQL database (a fresh one per
test).

What the operator counts on: every workflow arrives (finished ones with their result byte for byte
and their delivery state, a running one with its recorded steps, so it resumes), every outbox row
with its idempotency key and state, every user's own settings (``users.sqlite3``: none there, none
made); the counts of both sides are printed and agree; a second run copies nothing; an id PostgreSQL holds with other content is refused by name, before anything is
copied, and nothing is overwritten; a bot holding the store is a one-line refusal; a dry run
changes nothing; the DSN's password never shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
import pytest

from notifier.config import StorageSettings
from notifier.events import Event, Notice
from notifier.fanout import outbox_postgres
from notifier.fanout.outbox import NewNotice, Outbox
from notifier.fanout.outbox_postgres import OUTBOX_TABLE
from notifier.records import DeliveryState, WorkflowStatus
from notifier.store import ResultStore
from notifier.store.postgres import PostgresStore
from notifier.store.postgres.importer import SqliteImport
from notifier.store.postgres.user_settings import PostgresUserSettings
from notifier.store.user_settings import (
    USERS_FILE,
    ChannelSetting,
    PendingCode,
    open_user_settings,
)
from notifier.testing.loopback import free_port
from notifier.testing.processes import child_env

from .support import files_under, finished, make_record

LIMIT_S: Final = 120  # only keeps a broken command from hanging the suite
FROM_TO: Final = ("--from", "sqlite", "--to", "postgres")
PASSWORD: Final = "pw-5d21f-never-shown"  # trust auth ignores it; nothing may print it
# A result whose bytes a careless copy would change: key order, a NUL, a lone surrogate's escape,
# an integer beyond 64 bits, a float written in exponent form, text outside ASCII.
AWKWARD_RESULT: Final[dict[str, Any]] = {
    "zeta": "last key first",
    "text": "caf\u00e9 \u2603 nul:\x00 surrogate:\udcff",
    "big": 123456789012345678901234567890,
    "tiny": 1e-300,
    "alpha": [1, 2.5, None, True],
}


@dataclass(frozen=True)
class Source:
    """The SQLite store the tests copy, and what is in it."""

    config: Path
    data: Path
    delivered: str  # completed, delivered by DM
    pending: str  # completed, not delivered yet
    failed: str  # failed, marked undeliverable
    running: str  # running, two recorded steps, resumed once
    outbox_keys: dict[str, str]  # status -> idempotency key

    @property
    def finished(self) -> list[str]:
        return [self.delivered, self.pending, self.failed]


def _notice(workflow_id: str, event: Event, at: float) -> Notice:
    return Notice(event, workflow_id, 7, "user7", "autointel", occurred_at=at)


async def _fill(data: Path) -> tuple[list[str], dict[str, str]]:
    """Workflows in every state a store holds, and outbox rows in three states."""
    async with await ResultStore.open(StorageSettings(path=data)) as store:
        delivered = await finished(store, make_record(user_id=7), result=AWKWARD_RESULT)
        await store.mark_delivered(delivered.workflow_id, "dm")
        pending = await finished(store, make_record(user_id=7, url="https://b.example/"))
        failed = await finished(
            store,
            make_record(user_id=8),
            status=WorkflowStatus.FAILED,
            result={"error": "503"},
            error="the site answered 503",
        )
        await store.mark_undeliverable(failed.workflow_id, "every rung failed")
        running = make_record(user_id=9)
        await store.create(running)
        await store.record_step(running.workflow_id, 0, "fetch", {"pages": ["/", "/a"]})
        await store.record_step(running.workflow_id, 1, "parse", [1, 2, 3])
        await store.update_progress(running.workflow_id, stage="parse", progress=0.5)
        await store.note_resume(running.workflow_id)
    ids = [delivered.workflow_id, pending.workflow_id, failed.workflow_id, running.workflow_id]
    async with await Outbox.open(data / "outbox.sqlite3") as outbox:
        rows = await outbox.enqueue(
            [
                NewNotice("ops", "apprise", _notice(ids[0], Event.COMPLETED, 10.0)),
                NewNotice("ops", "apprise", _notice(ids[2], Event.FAILED, 11.0)),
                NewNotice("hook", "discord_webhook", _notice(ids[1], Event.COMPLETED, 12.0)),
            ],
            now_s=100.0,
        )
        sent, failed_row, pending_row = rows
        await outbox.mark_sent(sent.id, attempts=1, targets={}, now_s=101.0)
        await outbox.mark_failed(
            failed_row.id, attempts=5, error="HTTP 500 with a NUL\x00 inside", now_s=102.0
        )
    keys = {
        "sent": sent.idempotency_key,
        "failed": failed_row.idempotency_key,
        "pending": pending_row.idempotency_key,
    }
    return ids, keys


@pytest.fixture
async def source(tmp_path: Path, postgres_dsn: str) -> Source:
    data = tmp_path / "data"
    ids, keys = await _fill(data)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"storage:\n  backend: sqlite\n  path: {data}\n"
        f"  postgres_dsn: '{postgres_dsn} password={PASSWORD}'\n"
    )
    return Source(config, data, *ids, outbox_keys=keys)


def migrate(source: Source, *extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "notifier",
            "store",
            "migrate",
            *FROM_TO,
            "--config",
            str(source.config),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        cwd=source.config.parent,
        env=child_env(),
        check=False,
    )
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def _rows(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        return connection.execute(query, params or None).fetchall()


def _tables(dsn: str) -> list[str]:
    return [
        row[0] for row in _rows(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]


def _postgres(dsn: str) -> StorageSettings:
    return StorageSettings.model_validate({"backend": "postgres", "postgres_dsn": dsn})


def _contents(data: Path) -> dict[str, bytes]:
    """Every file of the store but SQLite's own -wal and -shm, which a reader may create (an
    empty log, a shared-memory index): the database files themselves must not change."""
    return {k: v for k, v in files_under(data).items() if not k.endswith(("-wal", "-shm"))}


def _table(stdout: str) -> dict[str, tuple[int, int]]:
    """The counts table: name -> (SQLite, PostgreSQL)."""
    found: dict[str, tuple[int, int]] = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 3 and words[-1].isdigit() and words[-2].isdigit():
            found[" ".join(words[:-2])] = (int(words[-2]), int(words[-1]))
    return found


async def _one_more_workflow(source: Source) -> str:
    """A workflow finished in the SQLite store after the first copy; a refused run must not
    copy it."""
    async with await ResultStore.open(StorageSettings(path=source.data)) as store:
        return (await finished(store, make_record(user_id=7))).workflow_id


def _in_postgres(dsn: str, workflow_id: str) -> bool:
    return _rows(dsn, "SELECT 1 FROM workflows WHERE workflow_id = %s", workflow_id) != []


def _dry_run_changing_nothing(source: Source, dsn: str) -> subprocess.CompletedProcess[str]:
    """`store migrate --dry-run`, after checking it ended well and left both sides as they were:
    no table in PostgreSQL, the SQLite store's files byte for byte."""
    files_before = _contents(source.data)
    done = migrate(source, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert _tables(dsn) == []
    assert _contents(source.data) == files_before
    return done


def _outbox(dsn: str) -> dict[str, tuple[Any, ...]]:
    rows = _rows(
        dsn,
        f"SELECT idempotency_key, status, attempts, last_error, notice_json, sent_at, claimed_by "
        f"FROM {OUTBOX_TABLE}",
    )
    return {row[0]: row[1:] for row in rows}


async def test_the_whole_store_is_copied_and_the_counts_agree(
    source: Source, postgres_dsn: str
) -> None:
    done = migrate(source)

    assert done.returncode == 0, done.stderr
    assert "copied 4 workflow(s) (2 completed, 1 failed, 1 running) with 3 result(s) and 2 " in (
        done.stdout
    )
    assert "no users' settings to copy" in done.stdout
    assert not (source.data / USERS_FILE).exists()
    assert "counts match" in done.stdout
    assert _table(done.stdout) == {
        "workflows": (4, 4),
        "workflows running": (1, 1),
        "workflows completed": (2, 2),
        "workflows failed": (1, 1),
        "delivery pending": (2, 2),
        "delivery delivered": (1, 1),
        "delivery undeliverable": (1, 1),
        "results": (3, 3),
        "recorded steps": (2, 2),
        "outbox rows": (3, 3),
        "outbox pending": (1, 1),
        "outbox sent": (1, 1),
        "outbox failed": (1, 1),
    }
    async with (
        await ResultStore.open(StorageSettings(path=source.data), maintain=False) as sqlite,
        await PostgresStore.open(_postgres(postgres_dsn), maintain=False) as postgres,
    ):
        for workflow_id in source.finished:
            assert await postgres.read_result(workflow_id) == await sqlite.read_result(workflow_id)
            [(document,)] = _rows(
                postgres_dsn, "SELECT document FROM results WHERE workflow_id = %s", workflow_id
            )
            assert bytes(document) == (source.data / "results" / f"{workflow_id}.json").read_bytes()
        for workflow_id in [*source.finished, source.running]:
            there, here = await postgres.get(workflow_id), await sqlite.get(workflow_id)
            assert there is not None and here is not None
            assert (there.status, there.delivery_state, there.delivered_via, there.resumes) == (
                here.status,
                here.delivery_state,
                here.delivered_via,
                here.resumes,
            )
            assert (there.stage, there.progress, there.error) == (
                here.stage,
                here.progress,
                here.error,
            )
        assert await postgres.steps(source.running) == await sqlite.steps(source.running)
        assert [r.workflow_id for r in await postgres.running()] == [source.running]
        assert [r.workflow_id for r in await postgres.pending_delivery()] == [source.pending]
        delivered = await postgres.get(source.delivered)
    assert delivered is not None
    assert (delivered.delivery_state, delivered.delivered_via) == (DeliveryState.DELIVERED, "dm")
    outbox = _outbox(postgres_dsn)
    assert set(outbox) == set(source.outbox_keys.values())
    assert outbox[source.outbox_keys["sent"]][:2] == ("sent", 1)
    assert outbox[source.outbox_keys["failed"]][:3] == (
        "failed",
        5,
        "HTTP 500 with a NUL\\x00 inside",
    )
    assert outbox[source.outbox_keys["pending"]][0] == "pending"
    assert (
        outbox[source.outbox_keys["pending"]][-1] is None
    )  # claimed by nobody: sent by whoever polls


async def test_a_second_run_copies_nothing_and_says_so(source: Source, postgres_dsn: str) -> None:
    first = migrate(source)
    before = _rows(postgres_dsn, "SELECT workflow_id, id FROM workflows ORDER BY id")

    second = migrate(source)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "nothing to copy" in second.stdout
    assert "(4 workflow(s), 3 outbox row(s))" in second.stdout
    assert "counts match" in second.stdout
    assert _rows(postgres_dsn, "SELECT workflow_id, id FROM workflows ORDER BY id") == before
    assert len(_outbox(postgres_dsn)) == 3


async def test_an_id_held_with_other_content_is_refused_by_name_and_nothing_is_copied(
    source: Source, postgres_dsn: str
) -> None:
    assert migrate(source).returncode == 0
    # PostgreSQL's copy moves on (a bot there delivered it), and the SQLite store gets one more.
    _rows(
        postgres_dsn,
        "UPDATE workflows SET delivery_state = 'delivered', delivered_via = 'channel' "
        "WHERE workflow_id = %s RETURNING 1",
        source.pending,
    )
    later = await _one_more_workflow(source)

    done = migrate(source)

    assert done.returncode == 1
    assert (
        f"workflow {source.pending} is in PostgreSQL with other content "
        "(delivery_state, delivered_via differ): not overwritten"
    ) in done.stderr
    assert "refused: nothing was copied, nothing overwritten" in done.stderr
    assert _rows(
        postgres_dsn,
        "SELECT delivery_state, delivered_via FROM workflows WHERE workflow_id = %s",
        source.pending,
    ) == [("delivered", "channel")]
    assert not _in_postgres(postgres_dsn, later)


async def test_an_outbox_row_held_with_other_content_is_refused_by_its_key(
    source: Source, postgres_dsn: str
) -> None:
    assert migrate(source).returncode == 0
    key = source.outbox_keys["pending"]
    _rows(
        postgres_dsn,
        f"UPDATE {OUTBOX_TABLE} SET status = 'sent', sent_at = 200 WHERE idempotency_key = %s "
        "RETURNING 1",
        key,
    )

    done = migrate(source)

    assert done.returncode == 1
    assert f"outbox row {key} (notifier hook, workflow {source.pending})" in done.stderr
    assert "(status, sent_at differ)" in done.stderr
    assert _outbox(postgres_dsn)[key][0] == "sent"


async def test_a_bot_holding_the_store_is_a_one_line_refusal(
    source: Source, postgres_dsn: str
) -> None:
    async with await ResultStore.open(StorageSettings(path=source.data)):  # as a running bot
        done = migrate(source)

    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert f"the bot (PID {os.getpid()}) holds " in done.stderr
    assert "stop it before migrating the store; nothing was copied" in done.stderr
    assert _tables(postgres_dsn) == []


async def test_a_dry_run_says_what_it_would_copy_and_changes_nothing(
    source: Source, postgres_dsn: str
) -> None:
    done = _dry_run_changing_nothing(source, postgres_dsn)

    assert "dry run: nothing is changed" in done.stdout
    assert "store: no schema yet (would be created" in done.stdout
    assert (
        "would copy 4 workflow(s) (2 completed, 1 failed, 1 running) with 3 result(s) and 2 "
        "recorded step(s), and 3 outbox row(s) (1 failed, 1 pending, 1 sent)"
    ) in done.stdout
    assert "no users' settings to copy" in done.stdout


async def test_a_dry_run_after_a_copy_finds_everything_there(
    source: Source, postgres_dsn: str
) -> None:
    assert migrate(source).returncode == 0
    contents_before = _rows(postgres_dsn, "SELECT workflow_id, status FROM workflows ORDER BY id")

    done = migrate(source, "--dry-run")

    assert done.returncode == 0, done.stderr
    assert "would copy 0 workflow(s) (none)" in done.stdout
    assert "the same content (skipped): 4 workflow(s), 3 outbox row(s)" in done.stdout
    assert _rows(postgres_dsn, "SELECT workflow_id, status FROM workflows ORDER BY id") == (
        contents_before
    )


def test_without_a_dsn_it_refuses_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"storage:\n  path: {tmp_path / 'data'}\n")

    done = subprocess.run(
        [sys.executable, "-m", "notifier", "--config", str(config), "store", "migrate", *FROM_TO],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        env=child_env(),
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "storage.postgres_dsn is not set" in done.stderr


async def test_a_damaged_result_is_reconciled_first_and_copied_as_lost(
    source: Source, postgres_dsn: str
) -> None:
    (source.data / "results" / f"{source.pending}.json").write_bytes(b'{"half a docu')

    done = migrate(source)

    assert done.returncode == 0, done.stderr
    assert (
        "reconciled the SQLite store first (as the bot does at start): quarantined 1" in done.stdout
    )
    table = _table(done.stdout)
    assert table["workflows lost"] == (1, 1)
    assert table["results"] == (2, 2)
    assert _rows(
        postgres_dsn, "SELECT status FROM workflows WHERE workflow_id = %s", source.pending
    ) == [("lost",)]


def test_an_unreachable_server_is_named_without_its_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    asyncio.run(_fill(data))
    config = tmp_path / "config.yaml"
    dsn = f"host=127.0.0.1 port={free_port()} dbname=notifier user=notifier password={PASSWORD}"
    config.write_text(f"storage:\n  path: {data}\n  postgres_dsn: '{dsn}'\n")

    for extra in ((), ("--dry-run",)):
        done = migrate(Source(config, data, "", "", "", "", {}), *extra)

        assert done.returncode == 1
        assert done.stderr.count("\n") == 1
        assert "cannot connect to PostgreSQL at 127.0.0.1:" in done.stderr


async def test_pages_follow_one_another_in_order_without_gaps_or_repeats(
    source: Source, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_postgres, "IMPORT_PAGE_ROWS", 2)  # 3 rows: two pages
    target = _postgres(postgres_dsn)
    async with await PostgresStore.open(target):  # the store's schema
        pass

    async with await SqliteImport.open(source.data, target, page_rows=3) as importer:  # 4 rows
        await outbox_postgres.apply_outbox_migrations(importer.connection)
        copied = await importer.walk(write=True)
        outbox = await outbox_postgres.import_outbox(
            importer.connection, source.data / "outbox.sqlite3", write=True
        )
        again = await importer.walk(write=False)
        held = await importer.target_tally()

    assert copied.copied == copied.source == held
    assert (copied.source.workflows, copied.source.steps) == (4, 2)
    assert (again.same, again.new.workflows, again.conflicts) == (4, 0, [])
    assert (outbox.copied, sum(outbox.source.values())) == (3, 3)
    in_order = [source.delivered, source.pending, source.failed, source.running]
    assert [r[0] for r in _rows(postgres_dsn, "SELECT workflow_id FROM workflows ORDER BY id")] == (
        in_order
    )
    assert [
        r[0] for r in _rows(postgres_dsn, f"SELECT status FROM {OUTBOX_TABLE} ORDER BY id")
    ] == [
        "sent",
        "failed",
        "pending",
    ]


ANN, BEN = 123_456_789_012_345_678, 987_654_321_098_765_432  # Discord snowflakes (> 2**53)
ANN_MAIL = ChannelSetting("email", "ann@example.com", ("completed", "failed"), ("autointel",))
BEN_HOOK = ChannelSetting("webhook", "https://hooks.example/ben", ("completed",))
BEN_SECRET = "whsec_YmVuLXNpZ25pbmcta2V5LW5ldmVyLXNob3du"
BEN_CODE = PendingCode(
    "ben@example.org", "c0" * 32, 1_800_000_900.0, attempts=1, events=("persisted",)
)
SETTINGS_AT = 1_800_000_000.0
# The counts table's rows for the users' settings written by `_fill_users`.
USERS_TABLE: Final = {
    "users' channels": (2, 2),
    "users' webhook secret": (1, 1),
    "users' pending codes": (1, 1),
    "users' codes sent": (3, 3),
    "users' notice counts": (1, 1),
    "users' notes": (2, 2),
}


async def _fill_users(data: Path) -> None:
    """Two users' settings as the bot writes them: a channel each, Ben's secret and pending
    code, codes sent (one of them twice the same, one a forgotten user's), a notice count and
    notes (two alike)."""
    users = await open_user_settings(StorageSettings(path=data))
    try:
        await users.put_channel(ANN, ANN_MAIL, now=SETTINGS_AT)
        await users.put_channel(BEN, BEN_HOOK, now=SETTINGS_AT + 1)
        await users.set_webhook_secret(BEN, BEN_SECRET, now=SETTINGS_AT + 1)
        await users.put_code(BEN, BEN_CODE, now=SETTINGS_AT + 2)
        await users.count_wrong_code(BEN)
        await users.log_code_sent(ANN, "a1" * 32, now=SETTINGS_AT)
        await users.log_code_sent(BEN, "b2" * 32, now=SETTINGS_AT + 2)
        await users.log_code_sent(999, "d4" * 32, now=SETTINGS_AT + 3)
        await users.forget(999)  # keeps the code sent, without the user
        await users.count_notice(ANN, "2027-01-15")
        for _ in range(2):
            await users.add_note(ANN, "E-mail notices are off: 550 no such user", now=SETTINGS_AT)
    finally:
        await users.close()


def _users_rows(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(_rows(dsn, f"SELECT * FROM {table}"), key=repr)
        for table in (
            "user_channels",
            "user_secrets",
            "user_pending_codes",
            "user_codes_sent",
            "user_notice_counts",
            "user_notes",
        )
    }


async def test_the_users_settings_are_copied_verified_and_read_back(
    source: Source, postgres_dsn: str
) -> None:
    await _fill_users(source.data)

    first = migrate(source)
    copied = _users_rows(postgres_dsn)
    second = migrate(source)

    assert first.returncode == 0, first.stderr
    assert (
        "copied 10 users' settings row(s) (2 channels, 1 webhook secret, 1 pending codes, "
        "3 codes sent, 1 notice counts, 2 notes)"
    ) in first.stdout
    table = _table(first.stdout)
    assert {name: pair for name, pair in table.items() if name.startswith("users'")} == (
        USERS_TABLE
    )
    assert "counts match" in first.stdout
    assert second.returncode == 0, second.stderr
    assert (
        "users' settings: nothing to copy: every row is in PostgreSQL already, with the same "
        "content (10 row(s))"
    ) in second.stdout
    assert "counts match" in second.stdout
    assert _users_rows(postgres_dsn) == copied  # nothing doubled, nothing changed
    assert BEN_SECRET not in first.stdout + first.stderr + second.stdout + second.stderr

    users = await PostgresUserSettings.open(postgres_dsn)
    try:
        ann, ben = await users.get(ANN), await users.get(BEN)
        ben_code = await users.pending_code(BEN)
        ann_notes = await users.take_notes(ANN)
        ann_export = await users.export(ANN)
        forgotten = await users.codes_sent_since(since=0.0, address_hash="d4" * 32)
    finally:
        await users.close()
    assert dict(ann.channels) == {"email": dataclasses.replace(ANN_MAIL, updated_at=SETTINGS_AT)}
    assert dict(ben.channels) == {
        "webhook": dataclasses.replace(BEN_HOOK, updated_at=SETTINGS_AT + 1)
    }
    assert (ann.webhook_secret, ben.webhook_secret) == (None, BEN_SECRET)
    assert ben_code == dataclasses.replace(BEN_CODE, attempts=2)
    assert ann_notes == ["E-mail notices are off: 550 no such user"] * 2
    assert (ann_export["codes_sent"], ann_export["notice_counts"]) == (
        [SETTINGS_AT],
        {"2027-01-15": 1},
    )
    assert forgotten == 1


async def test_a_users_row_held_with_other_content_is_refused_by_user_and_kept(
    source: Source, postgres_dsn: str
) -> None:
    await _fill_users(source.data)
    assert migrate(source).returncode == 0
    # Ben rotated his secret on the PostgreSQL side; Ann's channel is still the same.
    _rows(
        postgres_dsn,
        "UPDATE user_secrets SET webhook_secret = 'whsec_bmV3LW9uZQ==' WHERE user_id = %s "
        "RETURNING 1",
        BEN,
    )
    later = await _one_more_workflow(source)

    done = migrate(source)

    assert done.returncode == 1
    assert (
        f"users' webhook secret row (user {BEN}) is in PostgreSQL with other content "
        "(webhook_secret differs): not overwritten"
    ) in done.stderr
    assert "1 users' settings row(s) are in PostgreSQL with other content" in done.stderr
    assert "refused: nothing was copied, nothing overwritten" in done.stderr
    assert BEN_SECRET not in done.stdout + done.stderr
    assert _rows(postgres_dsn, "SELECT webhook_secret FROM user_secrets") == [
        ("whsec_bmV3LW9uZQ==",)
    ]
    assert not _in_postgres(postgres_dsn, later)


async def test_a_dry_run_counts_the_users_settings_and_changes_nothing(
    source: Source, postgres_dsn: str
) -> None:
    await _fill_users(source.data)

    done = _dry_run_changing_nothing(source, postgres_dsn)

    assert (
        "would copy 10 users' settings row(s) (2 channels, 1 webhook secret, 1 pending codes, "
        "3 codes sent, 1 notice counts, 2 notes)"
    ) in done.stdout


async def test_a_users_file_the_bot_never_set_up_is_read_as_empty_and_left_as_it_was(
    source: Source, postgres_dsn: str
) -> None:
    users = source.data / USERS_FILE
    users.write_bytes(b"")
    users.chmod(0o644)

    done = _dry_run_changing_nothing(source, postgres_dsn)

    assert "would copy 0 users' settings row(s) (none)" in done.stdout
    assert users.read_bytes() == b""
    assert users.stat().st_mode & 0o777 == 0o644
