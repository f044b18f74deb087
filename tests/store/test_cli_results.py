"""`python -m notifier results ...` as an operator runs it: a real process against a real store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from notifier.config import StorageSettings
from notifier.records import WorkflowStatus
from notifier.store import ResultStore

from .support import DAY_S, EXAMPLE_RESULT, finished, make_record


@dataclass(frozen=True)
class Filled:
    config: Path
    data: Path
    recent: str  # user 7, completed, delivered
    old: str  # user 8, completed 40 days ago, delivered
    failed: str  # user 7, failed
    running: str  # user 9


@pytest.fixture
async def filled(tmp_path: Path) -> Filled:
    data = tmp_path / "data"
    config = tmp_path / "config.yaml"
    config.write_text(f"storage:\n  path: {data}\n  retention_days: 365\n")
    now = time.time()
    clock_now = [now - 40 * DAY_S]
    async with await ResultStore.open(
        StorageSettings(path=data), clock=lambda: clock_now[0]
    ) as store:
        old = await finished(store, make_record(user_id=8, url="https://old.example/100%_off"))
        await store.mark_delivered(old.workflow_id, "followup")
        clock_now[0] = now - 60
        recent = await finished(store, make_record(user_id=7, url="https://new.example/a_b"))
        await store.mark_delivered(recent.workflow_id, "dm")
        failed = await finished(
            store,
            make_record(user_id=7, url="https://down.example/"),
            status=WorkflowStatus.FAILED,
            result={"error": "503"},
            error="the site answered 503",
        )
        running = make_record(user_id=9, url="https://slow.example/")
        await store.create(running)
    return Filled(
        config, data, recent.workflow_id, old.workflow_id, failed.workflow_id, running.workflow_id
    )


def notifier(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def results(filled: Filled, *args: str) -> subprocess.CompletedProcess[str]:
    return notifier("--config", str(filled.config), "results", *args, cwd=filled.config.parent)


def _listed(output: str) -> list[str]:
    first_words = (line.split()[:1] for line in output.splitlines()[1:])
    return [words[0] for words in first_words if words and len(words[0]) == 32]


def test_list_shows_a_table_newest_first(filled: Filled) -> None:
    run = results(filled, "list")

    assert run.returncode == 0, run.stderr
    header = run.stdout.splitlines()[0].split()
    assert header[:5] == ["id", "status", "command", "user", "url"]
    assert "delivery" in header
    assert _listed(run.stdout) == [filled.running, filled.failed, filled.recent, filled.old]
    assert "1-4 of 4" in run.stdout
    assert "https://old.example/100%_off" in run.stdout


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--user", "7"], ["failed", "recent"]),
        (["--url", "%_off"], ["old"]),
        (["--url", "a_b"], ["recent"]),
        (["--status", "failed"], ["failed"]),
        (["--status", "running"], ["running"]),
        (["--since", "7d"], ["running", "failed", "recent"]),
        (["--until", "30d"], ["old"]),
        (["--since", "2000-01-01", "--until", "2000-01-02"], []),
        (["--limit", "1", "--offset", "1"], ["failed"]),
    ],
)
def test_list_filters(filled: Filled, filters: list[str], expected: list[str]) -> None:
    run = results(filled, "list", *filters)

    assert run.returncode == 0, run.stderr
    assert _listed(run.stdout) == [getattr(filled, name) for name in expected]


def test_show_prints_metadata_and_the_rendered_result(filled: Filled) -> None:
    run = results(filled, "show", filled.recent)

    assert run.returncode == 0, run.stderr
    assert f"workflow  {filled.recent}" in run.stdout
    assert "delivery  delivered (dm" in run.stdout
    assert "[embeds]" in run.stdout
    assert "Example Domain" in run.stdout
    assert "Top keywords: example (12)" in run.stdout


def test_show_accepts_a_pasted_dashed_id(filled: Filled) -> None:
    w = filled.recent
    run = results(filled, "show", f"{w[:8]}-{w[8:12]}-{w[12:16]}-{w[16:20]}-{w[20:]}")

    assert run.returncode == 0, run.stderr
    assert w in run.stdout


def test_show_of_a_running_workflow_says_there_is_no_result_yet(filled: Filled) -> None:
    run = results(filled, "show", filled.running)

    assert run.returncode == 0, run.stderr
    assert "no stored result (status running)" in run.stdout


def test_export_json_is_the_stored_document(filled: Filled) -> None:
    run = results(filled, "export", filled.recent)

    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["workflow_id"] == filled.recent
    assert document["result"] == EXAMPLE_RESULT


def test_export_markdown_to_a_file(filled: Filled, tmp_path: Path) -> None:
    out = tmp_path / "report.md"

    run = results(filled, "export", filled.failed, "--format", "md", "--output", str(out))

    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    report = out.read_text()
    assert report.startswith("# ❌ autointel · failed")
    assert "the site answered 503" in report


def test_purge_dry_run_then_purge(filled: Filled) -> None:
    dry = results(filled, "purge", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would purge 1 result finished before")
    assert (filled.data / "results" / f"{filled.old}.json").exists()

    run = results(filled, "purge", "--older-than", "30d")

    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("purged 1 result finished before")
    assert not (filled.data / "results" / f"{filled.old}.json").exists()
    assert _listed(results(filled, "list").stdout) == [filled.running, filled.failed, filled.recent]


async def test_beside_a_running_bot_reads_work_and_a_purge_is_refused(filled: Filled) -> None:
    # The bot's store holds the lock for as long as the bot runs.
    async with await ResultStore.open(StorageSettings(path=filled.data, retention_days=365)):
        listing = await asyncio.to_thread(results, filled, "list")
        shown = await asyncio.to_thread(results, filled, "show", filled.recent)
        dry = await asyncio.to_thread(results, filled, "purge", "--older-than", "30d", "--dry-run")
        refused = await asyncio.to_thread(results, filled, "purge", "--older-than", "30d")

    assert listing.returncode == shown.returncode == dry.returncode == 0
    assert filled.old in listing.stdout and filled.recent in shown.stdout
    assert dry.stdout.startswith("would purge 1 result")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"python -m notifier: error: the bot (PID {os.getpid()}) holds {filled.data}: stop it, "
        "or leave old results to its retention (storage.retention_days); nothing was purged"
    ]
    assert (filled.data / "results" / f"{filled.old}.json").exists()

    # The bot stopped: the same purge goes through.
    run = results(filled, "purge", "--older-than", "30d")
    assert run.returncode == 0, run.stderr
    assert not (filled.data / "results" / f"{filled.old}.json").exists()
    assert not (filled.data / "results" / f"{filled.old}.delivered").exists()


ERRORS = [
    pytest.param(["show", "../../etc/passwd"], 2, "invalid workflow id", id="bad-id"),
    pytest.param(["export", "*"], 2, "invalid workflow id", id="glob-id"),
    pytest.param(["show", "f" * 32], 1, f"no workflow {'f' * 32}", id="unknown-id"),
    pytest.param(["export", "f" * 32], 1, "no workflow", id="unknown-export"),
    pytest.param(["purge", "--older-than", "soon"], 2, "not a duration", id="bad-duration"),
    pytest.param(["list", "--since", "yesterday"], 2, "neither a duration", id="bad-since"),
    pytest.param(["list", "--status", "done"], 2, "invalid choice", id="bad-status"),
    pytest.param(["purge"], 2, "--older-than", id="missing-option"),
]


@pytest.mark.parametrize(("args", "code", "message"), ERRORS)
def test_errors_are_one_line_and_an_exit_code(
    filled: Filled, args: list[str], code: int, message: str
) -> None:
    run = results(filled, *args)

    assert run.returncode == code
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr


def test_export_of_a_result_lost_from_disk_fails(filled: Filled) -> None:
    (filled.data / "results" / f"{filled.recent}.json").unlink()

    run = results(filled, "export", filled.recent)

    assert run.returncode == 1
    assert "no stored result" in run.stderr


def test_a_bad_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  retention_days: -1\n")

    run = notifier("--config", str(config), "results", "list", cwd=tmp_path)

    assert run.returncode == 2
    assert "storage.retention_days" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_an_explicit_config_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    run = notifier("--config", str(tmp_path / "nope.yaml"), "results", "list", cwd=tmp_path)

    assert run.returncode == 2
    assert "file not found" in run.stderr


def test_without_a_config_file_the_defaults_apply_and_nothing_is_created(tmp_path: Path) -> None:
    run = notifier("results", "list", cwd=tmp_path)  # default storage.path: ./data

    assert run.returncode == 1
    assert "no result store at data" in run.stderr
    assert list(tmp_path.iterdir()) == []
