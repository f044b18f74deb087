"""Stored files are private: folders 0700, files 0600, whatever the umask.

Results name users and hold what they asked about; the index and the outbox hold user names,
URLs and summaries. The bot runs here under umask 000 (the most permissive an operator could have)
so a mode that only came out right because of the usual umask 022 would show. Everything under the
data folder is checked after a real run: the results (a completed and a failed workflow), the
quarantine (a corrupt half-written file found at start-up), the SQLite index and the outbox with
their -wal and -shm files. Files left behind with looser modes (a folder made by hand, an index or
outbox file restored from a copy) are made private when the bot opens them. So is the log file
(`logging.file`), which names users and the URLs they asked about.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from notifier.fanout.outbox import OutboxStatus
from notifier.logs import setup_logging
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, wait_until
from notifier.testing.project_bot import SteeredWorkflow, project_bot

ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def loose_modes(root: Path) -> dict[str, str]:
    """Everything under `root` (itself included) that is not a 0700 folder or a 0600 file."""
    loose = {}
    for path in [root, *sorted(root.rglob("*"))]:
        wanted = 0o700 if path.is_dir() else 0o600
        if mode(path) != wanted:
            loose[str(path.relative_to(root))] = f"{oct(mode(path))}, not {oct(wanted)}"
    return loose


def names_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


async def test_everything_the_bot_stores_is_owner_only(
    emulator: DiscordEmulator, tmp_path: Path, open_umask: None
) -> None:
    data = tmp_path / "data"
    results = data / "results"
    # Left by hand or by an older version: open folders, a readable index, a half-written temp.
    results.mkdir(parents=True, mode=0o777)
    data.chmod(0o755)
    results.chmod(0o777)
    (data / "index.sqlite3").touch(mode=0o644)
    (data / "index.sqlite3").chmod(0o644)
    temp = results / f".{ID}.0123456789abcdef.tmp"
    temp.write_text('{"format": 1, "workflow_id": "0123')  # cut off by a crash
    temp.chmod(0o666)
    overrides = {
        "notifiers": [{"name": "ops-dm", "plugin": "dm", "on": ["completed"], "options": {}}]
    }
    async with project_bot(emulator, data, overrides) as bot:
        for fail in (None, "the site is gone"):
            steered = SteeredWorkflow()
            steered.fail_with = fail
            steered.install(bot)
            await emulator.trigger_command("autointel", {"url": "http://x.test/"}, user="alice")
            await steered.started.wait()
            steered.release.set()

        async def both_settled() -> bool:
            records = await bot.store.search(ResultQuery())
            return len(records) == 2 and all(r.delivery_state.value != "pending" for r in records)

        await wait_until(both_settled)

        async def notice_sent() -> bool:
            rows = await bot.fanout.outbox.rows(limit=None)
            return bool(rows) and all(r.status is OutboxStatus.SENT for r in rows)

        await wait_until(notice_sent)
        # While SQLite has its -wal and -shm files open:
        assert loose_modes(data) == {}
        files = names_under(data)
    assert loose_modes(data) == {}  # and after the bot closed everything

    assert {"results", "quarantine", "index.sqlite3", "outbox.sqlite3"} <= files
    assert {"index.sqlite3-wal", "outbox.sqlite3-wal"} <= files
    assert len([f for f in files if f.startswith("results/") and f.endswith(".json")]) == 2
    assert [f for f in files if f.startswith("quarantine/")], "the corrupt temp was not kept"


async def test_an_outbox_elsewhere_is_created_private_and_a_loose_one_is_tightened(
    emulator: DiscordEmulator, tmp_path: Path, open_umask: None
) -> None:
    fresh = tmp_path / "spool" / "notices" / "outbox.sqlite3"
    async with project_bot(emulator, tmp_path / "data", {"fanout": {"outbox_path": str(fresh)}}):
        assert oct(mode(fresh.parent)) == oct(0o700)
        assert oct(mode(fresh)) == oct(0o600)

    # An outbox restored from a copy with the copy's mode, in an existing shared folder.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    restored = shared / "outbox.sqlite3"
    restored.write_bytes(fresh.read_bytes())
    restored.chmod(0o644)
    async with project_bot(
        emulator, tmp_path / "data2", {"fanout": {"outbox_path": str(restored)}}
    ):
        assert oct(mode(restored)) == oct(0o600)
        for sidecar in (shared / "outbox.sqlite3-wal", shared / "outbox.sqlite3-shm"):
            if sidecar.exists():
                assert oct(mode(sidecar)) == oct(0o600)
    assert oct(mode(shared)) == oct(0o755)  # a folder the bot did not make is not its to change


def test_the_log_file_is_owner_only_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    # Log lines name users and the URLs they asked about, like the results do.
    fresh = tmp_path / "logs" / "bot.log"
    setup_logging("INFO", file=fresh)
    logger.info("a line that creates the file")
    logger.complete()
    loose = tmp_path / "old.log"
    loose.write_text("kept from an earlier run\n")
    loose.chmod(0o644)
    setup_logging("INFO", file=loose)
    logger.info("a line appended to it")
    logger.complete()

    assert "creates the file" in fresh.read_text()
    assert mode(fresh) == 0o600
    assert loose.read_text().startswith("kept from an earlier run")
    assert mode(loose) == 0o600
