"""A workflow with recorded steps outlives its process: bot.py killed with SIGKILL, restarted.

1. A crawl of 15 pages killed once it has recorded 7: the restart resumes it, fetches none of the
   7 pages again (the site counts hits per URL), the result holds all 15 pages, and its user gets
   one result and one "resumed" notice.
2. A workflow that kills its own process in its fourth step: resumed `runner.max_resumes` (3)
   times, each time dying again, then failed with the step named; its user and the fanout are
   told, and the bot answers other commands all along.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from yarl import URL

from notifier.testing import DiscordEmulator, HttpSink, bot_process, every_message, text_of
from notifier.testing.processes import CapturedProcess, child_env
from notifier.testing.site import DemoSite

from .support import (
    PROJECT_ROOT,
    config_with_ops,
    result_file,
    step_rows,
    workflow_file,
    workflow_rows,
    write_config,
)

TITLE = "Resilience Handbook"  # the DemoSite start page's title: it is in every result


async def test_a_crawl_killed_at_page_7_of_15_resumes_without_fetching_those_pages_again(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, emulator, {"autointel": {"page_delay": 0.3}})
    async with DemoSite(pages=16) as site:
        async with bot_process(config, emulator) as first:
            handle = await emulator.trigger_command(
                "autointel", {"url": site.url, "depth": "deep"}, user="alice"
            )
            await handle.wait_for_message(lambda m: "crawling" in text_of(m), timeout_s=60)
            (workflow_id,) = (await workflow_rows(data)).keys()

            async def seven_recorded() -> bool:
                return len(await step_rows(data, workflow_id)) >= 7

            await first.wait_until(seven_recorded, what="7 pages recorded")
            await first.kill_9()
        recorded = await step_rows(data, workflow_id)
        assert [name for _, name in recorded][:7] == [f"page:{i}" for i in range(7)]
        before = Counter(site.hits)

        async with bot_process(config, emulator) as second:

            async def delivered() -> bool:
                rows = await workflow_rows(data)
                return rows[workflow_id].delivery_state == "delivered"

            await second.wait_until(delivered, what="the resumed crawl's result delivered")
            await second.stop()

    document = json.loads(result_file(data, workflow_id).read_text())
    assert document["workflow"]["status"] == "completed"
    pages = document["result"]["pages"]
    assert len(pages) == 15 and document["result"]["pages_analysed"] == 15
    hits = Counter(site.hits)
    recorded_paths = [URL(page["url"]).path for page in pages[: len(recorded)]]
    # Every page recorded before the kill was fetched once, by the first process only.
    assert all(before[path] == hits[path] == 1 for path in recorded_paths), hits
    assert all(hits[URL(page["url"]).path] == 1 for page in pages), hits
    messages = [m for m in every_message(emulator) if not m.deleted]
    results = [m for m in messages if TITLE in text_of(m) and workflow_id in text_of(m)]
    assert len(results) == 1, [text_of(m)[:200] for m in results]
    resumed = [m for m in messages if "resumed after a restart" in text_of(m)]
    assert len(resumed) == 1, [text_of(m) for m in resumed]
    assert f"{len(recorded)} of up to 15 pages were already done" in text_of(resumed[0])

    # The operator's CLI lists the recorded steps and the resume.
    async with CapturedProcess.running(
        sys.executable,
        "-m",
        "notifier",
        "--config",
        str(config),
        "results",
        "show",
        workflow_id,
        env=child_env(TEST_BOT_TOKEN=emulator.bot_token),
        cwd=PROJECT_ROOT,
    ) as cli:
        assert await cli.finish() == 0, cli.output()
    shown = "".join(cli.stdout)
    assert re.search(r"^resumes\s+1$", shown, re.M), shown
    assert re.search(r"^steps\s+15 recorded$", shown, re.M), shown
    assert re.search(r"^\s+14\s+page:14\s", shown, re.M), shown


POISON_WORKFLOW = """
import os
import signal

from notifier import Context, workflow


async def prepare(index: int) -> int:
    return index


async def explode() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@workflow(description="Kills its own process in its fourth step")
async def poison(ctx: Context) -> dict:
    for index in range(3):
        await ctx.step(f"prepare:{index}", prepare, index)
    await ctx.step("explode", explode)
    return {"summary": "never"}
"""


async def test_a_workflow_that_kills_its_process_is_given_up_after_max_resumes_naming_the_step(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with HttpSink() as sink, DemoSite(pages=2) as site:
        config = config_with_ops(
            tmp_path,
            emulator,
            sink,
            ["failed", "resumed"],
            extra=workflow_file(tmp_path, "poison", POISON_WORKFLOW),
        )
        commands = ("poison", "autointel")
        async with bot_process(config, emulator, commands=commands) as first:
            await emulator.trigger_command("poison", user="alice")
            assert await first.finish() != 0  # it killed itself
        (workflow_id,) = (await workflow_rows(data)).keys()
        assert [name for _, name in await step_rows(data, workflow_id)] == [
            "prepare:0",
            "prepare:1",
            "prepare:2",
        ]
        for _ in range(3):  # each start resumes it, and it kills the process again
            async with bot_process(config, emulator, commands=commands) as again:
                assert await again.finish() != 0
        async with bot_process(config, emulator, commands=commands) as last:

            async def told() -> bool:
                rows = await workflow_rows(data)
                return rows[workflow_id].delivery_state == "delivered"

            await last.wait_until(told, what="the give-up delivered")
            # The bot serves other commands as usual.
            other = await emulator.trigger_command(
                "autointel", {"url": site.url, "depth": "quick"}, user="bob"
            )
            await other.wait_for_message(lambda m: TITLE in text_of(m), timeout_s=60)
            await last.wait_until(lambda: len(sink.received) >= 4, what="notices sent")
            await last.stop()

    row = (await workflow_rows(data))[workflow_id]
    assert row.status == "failed"
    expected = "gave up after 3 resumes; it stopped in step 'explode' each time"
    document = json.loads(result_file(data, workflow_id).read_text())
    assert document["workflow"]["error"] == expected
    failure = [m for m in every_message(emulator) if expected in text_of(m)]
    assert len(failure) == 1
    assert sorted(sink.titles()) == ["Failed: poison"] + ["Resumed: poison"] * 3


TALLY_WORKFLOW = """
import os
import signal
from pathlib import Path
from typing import Literal

from notifier import Context, workflow

TALLY = Path({tally!r})
DIED = Path({died!r})


def die_once() -> None:
    if not DIED.exists():
        DIED.touch()
        os.kill(os.getpid(), signal.SIGKILL)


async def begin() -> str:
    return "begun"


async def count(where: str) -> int:
    with TALLY.open("a") as tally:
        tally.write("ran\\n")
    if where == "in_step":  # dies after the work, before the value is written
        die_once()
    return len(TALLY.read_text().splitlines())


@workflow(description="Counts how often its step runs")
async def tally(ctx: Context, where: Literal["in_step", "after_step"] = "after_step") -> dict:
    await ctx.step("begin", begin)
    runs = await ctx.step("count", count, where)
    if where == "after_step":  # dies once the value is written, before the body goes on
        die_once()
    return {{"summary": f"the step ran {{runs}} time(s)"}}
"""


@pytest.mark.parametrize(("where", "runs"), [("after_step", 1), ("in_step", 2)])
async def test_a_crash_around_a_steps_write_runs_the_step_at_most_once_more(
    emulator: DiscordEmulator, tmp_path: Path, where: str, runs: int
) -> None:
    data, tally = tmp_path / "data", tmp_path / "tally.txt"
    source = TALLY_WORKFLOW.format(tally=str(tally), died=str(tmp_path / "died"))
    config = write_config(tmp_path, emulator, workflow_file(tmp_path, "tally", source))
    async with bot_process(config, emulator, commands=("tally",)) as first:
        await emulator.trigger_command("tally", {"where": where}, user="alice")
        assert await first.finish() != 0  # it died at the crash point
    (workflow_id,) = (await workflow_rows(data)).keys()
    async with bot_process(config, emulator, commands=("tally",)) as second:

        async def delivered() -> bool:
            return (await workflow_rows(data))[workflow_id].delivery_state == "delivered"

        await second.wait_until(delivered, what="the resumed run's result delivered")
        await second.stop()
    # Written before the crash: replayed, never run again; not written: run once more.
    assert tally.read_text().splitlines() == ["ran"] * runs
    document = json.loads(result_file(data, workflow_id).read_text())
    assert document["result"]["summary"] == f"the step ran {runs} time(s)"
