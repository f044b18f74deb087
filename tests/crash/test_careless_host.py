"""A careless host (issue 15): two bots started on one `storage.path`, and an index or outbox
deleted or damaged behind the bot's back. `bot.py` runs as a real process against the emulator.

1. Two bots, one store: the second is refused at start (exit 2, one line naming the path and the
   first one's PID) before it touches anything; the first one's running workflow finishes and
   its user gets the result, once, and nobody is told it was interrupted.
2. `index.sqlite3` deleted while the bot was stopped: the restarted bot re-indexes every result
   with the delivery its mark records, so nothing delivered is posted again; every result can
   still be retrieved (`/retrieve_results`, the CLI beside the bot); the undelivered one is
   delivered.
3. `index.sqlite3` and `outbox.sqlite3` overwritten with garbage: the bot starts anyway, both
   files are in `quarantine/` under a time-stamped name, the results are re-indexed, and new
   notices flow.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

from notifier.config import StorageSettings
from notifier.store import ResultStore
from notifier.testing import (
    BotProcess,
    DiscordEmulator,
    HttpSink,
    bot_process,
    child_env,
    every_message,
    text_of,
)
from notifier.testing.project_bot import stored_workflow
from notifier.testing.site import DemoSite

from .support import PROJECT_ROOT, config_with_ops, workflow_rows, write_config

TITLE = "Resilience Handbook"  # the DemoSite start page's title: it is in every result


class GatedSite(DemoSite):
    """DemoSite whose pages after the first wait for `gate`: the workflow crawling it stays
    running for exactly as long as the test needs."""

    def __init__(self, **fields: int) -> None:
        super().__init__(**fields)
        self.gate = asyncio.Event()
        self.held: list[str] = []  # requests that waited at the gate

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != "/" and not self.gate.is_set():
            self.held.append(request.path)
            await self.gate.wait()
        return await super()._handle(request)


def _titled(emulator: DiscordEmulator, title: str) -> list[str]:
    return [text_of(m) for m in every_message(emulator) if title in text_of(m) and not m.deleted]


def _cli(emulator: DiscordEmulator, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's CLI, with the bot's environment (its config names `${TEST_BOT_TOKEN}`)."""
    return subprocess.run(
        [sys.executable, "-m", "notifier", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        env=child_env(TEST_BOT_TOKEN=emulator.bot_token),
    )


async def _retrieve(emulator: DiscordEmulator, workflow_id: str, user: str) -> str:
    handle = await emulator.trigger_command(
        "retrieve_results", {"workflow_id": workflow_id}, user=user
    )
    return text_of(await handle.wait_for_message(timeout_s=30))


# ---------------------------------------------------------------------------------------------
# 1. Two bots on one store


async def test_a_second_bot_on_the_same_store_is_refused_and_the_first_delivers(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, emulator)
    async with GatedSite(pages=4) as site, bot_process(config, emulator) as first:
        handle = await emulator.trigger_command(
            "autointel", {"url": site.url, "depth": "standard"}, user="alice"
        )
        await first.wait_until(
            lambda: site.held, what="the first bot's workflow crawling (held at the gate)"
        )
        ready_before = emulator.ready_count
        async with BotProcess.running(
            sys.executable,
            str(PROJECT_ROOT / "bot.py"),
            "--config",
            str(config),
            cwd=PROJECT_ROOT,
            env=child_env(TEST_BOT_TOKEN=emulator.bot_token),
            token=emulator.bot_token,
        ) as second:
            code = await second.finish()
        assert code == 2, second.output()[-3000:]
        assert second.stderr[-1].rstrip("\n") == (
            f"error: storage.path {data} is locked by PID {first.pid} (another bot, or the CLI "
            "purging it): stop that process, or give this bot its own storage.path"
        )
        second.assert_clean()
        assert emulator.ready_count == ready_before  # it never connected to Discord

        site.gate.set()
        await handle.wait_for_message(lambda m: TITLE in text_of(m), timeout_s=60)
        await first.stop()

    (row,) = (await workflow_rows(data)).values()
    assert (row.status, row.delivery_state) == ("completed", "delivered")
    assert len(_titled(emulator, TITLE)) == 1
    assert not [m for m in every_message(emulator) if "interrupted" in text_of(m)]


# ---------------------------------------------------------------------------------------------
# 2. The index deleted


async def _stored(data: Path, emulator: DiscordEmulator) -> dict[str, str]:
    """As a bot leaves its store: alice's and bob's results delivered, carol's persisted and
    never delivered (that process died). Title -> workflow id."""
    titles = {"Alice's report": "alice", "Bob's report": "bob", "Carol's report": "carol"}
    ids = {}
    async with await ResultStore.open(StorageSettings(path=data)) as store:
        for title, user in titles.items():
            ids[title] = await stored_workflow(
                store,
                emulator,
                user=user,
                result={"title": title, "summary": "Three pages."},
                delivered_via=None if user == "carol" else "channel",
                created_at=time.time() - 3_600,
            )
    return ids


async def test_a_deleted_index_is_rebuilt_without_delivering_anything_twice(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, emulator)
    ids = await _stored(data, emulator)
    (data / "index.sqlite3").unlink()

    async with bot_process(config, emulator) as bot:

        async def carol_delivered() -> bool:
            rows = await workflow_rows(data)
            return rows.get(ids["Carol's report"], None) is not None and all(
                row.delivery_state == "delivered" for row in rows.values()
            )

        await bot.wait_until(carol_delivered, what="the undelivered result delivered")
        retrieved = await _retrieve(emulator, ids["Alice's report"], "alice")
        shown = await asyncio.to_thread(
            _cli, emulator, config, "results", "show", ids["Bob's report"]
        )
        await bot.stop()

    assert "Alice's report" in retrieved
    assert shown.returncode == 0, shown.stderr
    assert "Bob's report" in shown.stdout
    assert len(_titled(emulator, "Carol's report")) == 1
    assert _titled(emulator, "Alice's report") == [retrieved]  # her own retrieval only
    assert _titled(emulator, "Bob's report") == []  # delivered before: not posted again


# ---------------------------------------------------------------------------------------------
# 3. The index and the outbox damaged


async def test_a_damaged_index_and_outbox_go_to_quarantine_and_the_bot_starts(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ids = await _stored(data, emulator)
    for name in ("index.sqlite3", "outbox.sqlite3"):
        (data / name).write_bytes(b"\x00garbage, not an SQLite file\n" * 100)

    async with HttpSink() as sink, DemoSite(pages=2) as site:
        config = config_with_ops(tmp_path, emulator, sink, ["completed"])
        async with bot_process(config, emulator) as bot:
            retrieved = await _retrieve(emulator, ids["Bob's report"], "bob")
            handle = await emulator.trigger_command(
                "autointel", {"url": site.url, "depth": "quick"}, user="alice"
            )
            await handle.wait_for_message(lambda m: TITLE in text_of(m), timeout_s=60)
            await bot.wait_until(lambda: sink.titles(), what="the new completed notice")
            await bot.stop()

    quarantined = sorted(p.name for p in (data / "quarantine").iterdir())
    assert [re.sub(r"\.\d{8}T\d{6}Z\.[0-9a-f]{8}$", "", n) for n in quarantined] == [
        "index.sqlite3",
        "outbox.sqlite3",
    ]
    errors = [line for line in bot.stderr if "| ERROR" in line and "damaged" in line]
    assert len(errors) == 2, errors
    assert "Bob's report" in retrieved  # re-indexed from its file
    assert sink.titles() == ["Completed: autointel"]
    assert _titled(emulator, "Alice's report") == []  # its delivery mark survived the index
