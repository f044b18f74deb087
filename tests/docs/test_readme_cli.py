"""README "Operating it" → CLI: every command form the README lists runs as written (from a folder
holding config.yaml, as `python -m notifier ...`), against a real store and outbox."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from notifier.config import StorageSettings
from notifier.events import Event, Notice
from notifier.fanout.outbox import NewNotice, Outbox, OutboxStatus
from notifier.records import WorkflowRecord, WorkflowStatus, new_workflow_id
from notifier.store import ResultStore

from .readme import section

DAY_S = 86_400.0

# Each form as the README writes it -> the concrete invocations that exercise it.
# `{recent}`, `{old}` and `{failed_row}` are filled in from the prepared store and outbox.
README_FORMS: dict[str, list[list[str]]] = {
    "python -m notifier results list [--user ID] [--url TEXT] [--status S] [--since 7d]": [
        ["results", "list"],
        ["results", "list", "--user", "7", "--url", "example", "--status", "completed"],
        ["results", "list", "--since", "7d"],
    ],
    "results show ID": [["results", "show", "{recent}"]],
    "results export ID [--format json|md]": [
        ["results", "export", "{recent}"],
        ["results", "export", "{recent}", "--format", "json"],
        ["results", "export", "{recent}", "--format", "md"],
    ],
    "results purge --older-than 30d [--dry-run]": [
        ["results", "purge", "--older-than", "30d", "--dry-run"],
        ["results", "purge", "--older-than", "30d"],
    ],
    "outbox list [--status S]": [["outbox", "list"], ["outbox", "list", "--status", "failed"]],
    "outbox retry ID | --all-failed": [
        ["outbox", "retry", "{failed_row}"],
        ["outbox", "retry", "--all-failed"],
    ],
    "./config.yaml": [],  # the default every form above relies on (they run beside it)
    "python -m notifier --config FILE results list": [
        ["--config", "{config}", "results", "list"],  # run from another folder
    ],
}


def readme_forms() -> list[str]:
    text = section("Operating it")
    bullet = text[text.index("**CLI**") : text.index("- **Retention**")]
    return re.findall(r"`([^`]+)`", " ".join(bullet.split()))


def test_the_test_knows_every_cli_form_the_readme_lists() -> None:
    assert readme_forms() == list(README_FORMS)


@dataclass(frozen=True)
class Prepared:
    folder: Path
    recent: str
    old: str
    failed_rows: tuple[int, ...]


def _record(user_id: int, url: str) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=new_workflow_id(),
        command="autointel",
        user_id=user_id,
        user_name=f"user{user_id}",
        options={"url": url, "depth": "quick"},
        channel_id=1,
        guild_id=2,
    )


@pytest.fixture
async def prepared(tmp_path: Path) -> Prepared:
    data = tmp_path / "data"
    (tmp_path / "config.yaml").write_text(f"storage:\n  path: {data}\n", encoding="utf-8")
    now = [time.time() - 40 * DAY_S]
    async with await ResultStore.open(StorageSettings(path=data), clock=lambda: now[0]) as store:
        old = _record(8, "https://old.example.org/")
        await store.create(old)
        await store.finish(old.workflow_id, status=WorkflowStatus.COMPLETED, result={"n": 1})
        await store.mark_delivered(old.workflow_id, "channel")
        now[0] = time.time() - 60
        recent = _record(7, "https://example.org/")
        await store.create(recent)
        await store.finish(
            recent.workflow_id,
            status=WorkflowStatus.COMPLETED,
            result={"title": "Example Domain", "summary": "One page about examples."},
        )
        await store.mark_delivered(recent.workflow_id, "dm")
    async with await Outbox.open(data / "outbox.sqlite3") as outbox:
        rows = await outbox.enqueue(
            [
                NewNotice(
                    "ops-mail",
                    "email",
                    Notice(Event.COMPLETED, recent.workflow_id, 7, "user7", "autointel"),
                ),
                NewNotice(
                    "ops-hook",
                    "discord_webhook",
                    Notice(Event.COMPLETED, recent.workflow_id, 7, "user7", "autointel"),
                ),
            ],
            now_s=time.time(),
        )
        for row in rows:
            await outbox.mark_failed(row.id, attempts=6, error="HTTP 503", now_s=time.time())
    return Prepared(tmp_path, recent.workflow_id, old.workflow_id, tuple(r.id for r in rows))


def run(prepared: Prepared, argv: list[str]) -> subprocess.CompletedProcess[str]:
    config = prepared.folder / "config.yaml"
    filled = [
        a.format(
            recent=prepared.recent,
            old=prepared.old,
            failed_row=prepared.failed_rows[0],
            config=config,
        )
        for a in argv
    ]
    elsewhere = prepared.folder / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "notifier", *filled],
        capture_output=True,
        text=True,
        timeout=120,
        # Without --config, config.yaml is found where the operator runs the command.
        cwd=elsewhere if "--config" in argv else prepared.folder,
    )


async def outbox_statuses(prepared: Prepared) -> list[OutboxStatus]:
    async with await Outbox.open(prepared.folder / "data" / "outbox.sqlite3") as outbox:
        return [r.status for r in sorted(await outbox.rows(limit=None), key=lambda r: r.id)]


async def test_every_readme_cli_form_runs_as_written(prepared: Prepared) -> None:
    outputs: dict[str, list[str]] = {}
    for form, invocations in README_FORMS.items():
        outputs[form] = []
        for argv in invocations:
            done = run(prepared, argv)
            assert done.returncode == 0, (argv, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr
            outputs[form].append(done.stdout)

    listing, filtered, since = outputs[next(iter(README_FORMS))]
    assert prepared.recent in listing and prepared.old in listing
    assert prepared.recent in filtered and prepared.old not in filtered
    assert prepared.recent in since and prepared.old not in since

    (shown,) = outputs["results show ID"]
    assert prepared.recent in shown and "Example Domain" in shown

    plain, as_json, as_md = outputs["results export ID [--format json|md]"]
    assert json.loads(plain) == json.loads(as_json)
    assert json.loads(as_json)["result"]["title"] == "Example Domain"
    assert "Example Domain" in as_md and as_json != as_md

    dry, purged = outputs["results purge --older-than 30d [--dry-run]"]
    assert dry.startswith("would purge 1 result")
    assert purged.startswith("purged 1 result")
    gone = run(prepared, ["results", "show", "{old}"])
    assert gone.returncode == 1  # purged for real by the second command, not by the dry run
    still = run(prepared, ["results", "show", "{recent}"])
    assert still.returncode == 0

    (other,) = outputs["python -m notifier --config FILE results list"]
    assert prepared.recent in other

    every, failed = outputs["outbox list [--status S]"]
    assert "ops-mail" in every and "ops-hook" in every
    assert "failed" in failed
    one, rest = outputs["outbox retry ID | --all-failed"]
    assert one.startswith(f"requeued notice {prepared.failed_rows[0]} (completed to ops-mail)")
    assert rest.startswith("requeued 1 failed notice(s)")
    assert await outbox_statuses(prepared) == [OutboxStatus.PENDING, OutboxStatus.PENDING]
