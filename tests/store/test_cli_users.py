"""`python -m notifier users list|show|forget` as an operator runs it, for data requests: a real
process against the users' settings and the outbox on each backend (tests/store/conftest.py:
SQLite files in tmp_path, and a PostgreSQL database of the test's own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from notifier.config import Settings, StorageSettings
from notifier.events import Event, Notice
from notifier.fanout.outbox import NewNotice, open_outbox
from notifier.store.user_settings import (
    USERS_FILE,
    ChannelSetting,
    PendingCode,
    open_user_settings,
)
from notifier.testing.processes import run_cli

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
ALICE, BOB = 123_456_789_012_345_678, 987_654_321_098_765_432  # Discord snowflakes (> 2**53)
SECRET = "whsec_c2VjcmV0LWtleS1vZi1hbGljZQ=="


def _config(tmp_path: Path, storage: StorageSettings) -> Path:
    section: dict[str, object] = {"path": str(storage.path), "backend": storage.backend}
    if storage.postgres_dsn is not None:
        section["postgres_dsn"] = storage.postgres_dsn.get_secret_value()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"storage": section}), encoding="utf-8")
    return path


def _notice(user_id: int, workflow_id: str) -> Notice:
    return Notice(
        event=Event.COMPLETED,
        workflow_id=workflow_id,
        user_id=user_id,
        user_name=f"user{user_id}",
        command="autointel",
        occurred_at=NOW,
    )


async def _fill(store_settings: StorageSettings) -> None:
    """Alice has everything there is to store and two queued notices; Bob a DM and one."""
    users = await open_user_settings(store_settings)
    try:
        await users.put_channel(
            ALICE, ChannelSetting("email", "alice@example.com", ("completed",)), now=NOW
        )
        await users.put_channel(
            ALICE, ChannelSetting("webhook", "https://hooks.example/alice", ("failed",)), now=NOW
        )
        await users.set_webhook_secret(ALICE, SECRET, now=NOW)
        await users.put_code(
            ALICE, PendingCode("alice.new@example.com", "sha256:ab", NOW + 900), now=NOW
        )
        await users.log_code_sent(ALICE, "e3" * 32, now=NOW)
        await users.count_notice(ALICE, "2027-01-15")
        await users.add_note(ALICE, "your e-mail address refused mail", now=NOW)
        await users.put_channel(BOB, ChannelSetting("dm", "", ("completed",)), now=NOW)
    finally:
        await users.close()
    outbox = await open_outbox(Settings(storage=store_settings))
    async with outbox:
        await outbox.enqueue(
            [
                NewNotice("user:email", "user_email", _notice(ALICE, "a" * 32)),
                NewNotice("ops", "apprise", _notice(ALICE, "a" * 32)),
                NewNotice("user:dm", "user_dm", _notice(BOB, "b" * 32)),
            ],
            now_s=NOW,
        )


async def test_list_show_and_forget_answer_a_data_request(
    store_settings: StorageSettings, tmp_path: Path
) -> None:
    await _fill(store_settings)
    config = _config(tmp_path, store_settings)

    code, listed, _ = await run_cli(config, "users", "list")
    assert code == 0
    lines = listed.splitlines()
    assert lines[0].split()[:4] == ["USER", "CHANNELS", "CODE", "NOTES"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:-1]}
    assert rows == {str(ALICE): ["email,webhook", "pending", "1"], str(BOB): ["dm", "-", "0"]}
    assert lines[-1] == "(2 user(s))"

    code, shown, _ = await run_cli(config, "users", "show", str(ALICE))
    assert code == 0
    assert "email: on, alice@example.com" in shown
    assert "webhook: on, https://hooks.example/alice" in shown
    assert "webhook secret: whsec_***" in shown and SECRET not in shown
    assert "pending e-mail code: for a***@example.com" in shown
    assert "notices counted per day (UTC): 2027-01-15: 1" in shown
    assert "your e-mail address refused mail" in shown

    code, exported, _ = await run_cli(config, "users", "show", str(ALICE), "--json")
    assert code == 0
    document = json.loads(exported)
    assert document["user_id"] == ALICE
    assert [c["via"] for c in document["channels"]] == ["email", "webhook"]

    code, forgot, _ = await run_cli(config, "users", "forget", str(ALICE))
    assert code == 0
    assert forgot.startswith(f"forgot user {ALICE}: 2 channels, 1 webhook secret, 1 pending codes")
    assert forgot.rstrip().endswith("; 2 outbox notice(s)")

    code, after, _ = await run_cli(config, "users", "show", str(ALICE))
    assert (code, after.strip()) == (0, f"nothing is stored about user {ALICE}")
    code, again, _ = await run_cli(config, "users", "forget", str(ALICE))
    assert (code, again.strip()) == (0, f"nothing was stored about user {ALICE}; nothing deleted")
    # Bob is untouched: his settings and his queued notice.
    outbox = await open_outbox(Settings(storage=store_settings))
    async with outbox:
        left = await outbox.rows(limit=None)
    assert [(r.notifier, r.notice.user_id) for r in left] == [("user:dm", BOB)]
    code, listed, _ = await run_cli(config, "users", "list")
    assert [line.split()[0] for line in listed.splitlines()[1:-1]] == [str(BOB)]


@pytest.mark.parametrize(
    "user_id",
    ["alice", "0", "-5", str(2**63), "12.5"],
    ids=["word", "zero", "negative", "huge", "fraction"],
)
def test_a_malformed_user_id_is_a_usage_error_in_one_line(tmp_path: Path, user_id: str) -> None:
    from notifier.cli.main import main

    config = tmp_path / "config.yaml"
    config.write_text(f"storage:\n  path: {tmp_path / 'data'}\n", encoding="utf-8")
    assert main(["--config", str(config), "users", "show", user_id]) == 2


async def test_looking_at_a_store_nobody_used_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "config.yaml"
    config.write_text(f"storage:\n  path: {data}\n", encoding="utf-8")

    code, listed, _ = await run_cli(config, "users", "list")
    assert code == 0 and "nobody has used /notify there" in listed
    code, shown, _ = await run_cli(config, "users", "show", str(ALICE))
    assert (code, shown.strip()) == (0, f"nothing is stored about user {ALICE}")
    code, forgot, _ = await run_cli(config, "users", "forget", str(ALICE))
    assert (code, forgot.strip()) == (0, f"nothing was stored about user {ALICE}; nothing deleted")
    assert not data.exists()
    assert not (data / USERS_FILE).exists()
