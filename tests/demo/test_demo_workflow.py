"""`notifier demo --workflow NAME --option k=v`: any discovered workflow played through the same
emulator, store and notifiers as the story, told as a timeline; a workflow or an option it cannot
play is one line and exit 2, before anything starts."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.config import Settings, load_config
from notifier.demo.run import run_demo
from notifier.testing import CapturedProcess, child_env

ROOT = Path(__file__).resolve().parents[2]
NOTIFIER_DEMO = (sys.executable, "-m", "notifier", "demo")
ID = r"[0-9a-f]{32}"
STAMP = r"^\[\d\d:\d\d\.\d\] "

COUNT = """\
import asyncio

from notifier import Context, workflow


@workflow(description="Count slowly", estimate_s=1200)
async def count(ctx: Context, n: int = 10, private: bool = False) -> dict:
    for i in range(n):
        ctx.progress(stage="counting", fraction=i / n, detail=f"{i} of {n}")
        await asyncio.sleep(1)
    return {"summary": f"counted to {n}"}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An operator's folder: config.yaml and workflows/count.py beside it."""
    folder = tmp_path / "bot"
    (folder / "workflows").mkdir(parents=True)
    (folder / "workflows" / "count.py").write_text(COUNT, encoding="utf-8")
    (folder / "config.yaml").write_text("workflows:\n  dirs: [workflows]\n", encoding="utf-8")
    return folder / "config.yaml"


def demo_folders(tmpdir: Path) -> list[Path]:
    """What a demo left in the temporary directory."""
    return sorted(tmpdir.glob("notifier-demo-*"))


def timeline(stdout: str) -> list[str]:
    return [re.sub(STAMP, "", line) for line in stdout.splitlines() if re.match(STAMP, line)]


def index_of(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert len(found) == 1, f"{len(found)} lines match {pattern!r}:\n" + "\n".join(lines)
    return found[0]


async def test_an_operators_workflow_plays_from_the_command_line_to_a_delivered_result(
    project: Path, tmp_path: Path
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    argv = [*NOTIFIER_DEMO, "--config", str(project), "--demo-ttl", "5"]
    argv += ["--workflow", "count", "--option", "n=8"]
    async with CapturedProcess.running(
        *argv, env=child_env(TMPDIR=str(tmpdir)), cwd=tmp_path
    ) as demo:
        assert await demo.finish() == 0, demo.output()[-4000:]
    out = "".join(demo.stdout)
    assert "Traceback" not in demo.output()
    assert f"workflow          /count from {project.parent / 'workflows' / 'count.py'}:6" in out
    lines = timeline(out)
    in_order = [
        r"^/count deferred, \d+ ms after the command; Discord allows 3 s$",
        rf"^workflow {ID} stored as running, started in the background$",
        r"^progress 0%: counting, 0 of 8 \(editing the 'thinking' message with the interaction",
        r'^hand-off posted while the token had \d+\.\d s left: "\.\.\.progress and the result '
        r'will continue in #general\."$',
        r"^progress \d+%: counting, \d of 8 \(now a status message in #general, edited with the "
        r"bot token\)$",
        r"^interaction token expired .*; calls made with it since: 0$",
        rf"^result persisted: completed, results/{ID}\.json \([\d,]+ bytes\), before any delivery",
        r"^result delivered in #general with the bot token, mentioning alice \(1 embed\)$",
    ]
    places = [index_of(lines, pattern) for pattern in in_order]
    assert places == sorted(places), "\n".join(lines)
    # The workflow's own estimate (1200 s) drives the warning, privately and to operators.
    warning = index_of(lines, r"^timeout warning shown privately to alice: estimated 20m 00s")
    assert warning < places[3]
    assert index_of(lines, r'^webhook received in #ops: "Long workflow: count may take 20m 00s"')
    assert index_of(lines, r'^webhook received in #ops: "Handed off: count"') > places[1]
    assert index_of(lines, r'^webhook received in #ops: "Completed: count"') > places[6]
    assert index_of(lines, r'^email received by ops@example\.com: subject "count finished') > 0
    assert "  /count ran 8 s (completed); its interaction token lived 5 s." in out
    assert "  - delivered: in #general (bot token)" in out
    assert sorted(tmpdir.iterdir()) == []


async def test_the_built_in_autointel_plays_against_the_demo_site_without_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    out = io.StringIO()
    status = await run_demo(
        load_config(ROOT / "config.yaml", env={}),
        ROOT / "config.yaml",
        keep_running=False,
        ttl_s=5,
        out=out,
        workflow="autointel",
    )
    text = out.getvalue()
    assert status == 0, text
    site = re.search(r"web site\s+(http://127\.0\.0\.1:\d+/)", text)
    assert site is not None
    # The one thing the demo does for a workflow: a `url` not given is its slow site.
    assert f"alice runs /autointel url:{site.group(1)} depth:standard" in text
    lines = timeline(text)
    assert index_of(lines, r"^result persisted: completed") < index_of(lines, r"^result delivered ")
    assert demo_folders(tmp_path) == []


@pytest.mark.parametrize(
    ("workflow", "options", "line"),
    [
        ("cuont", {}, "error: no workflow is named 'cuont', did you mean 'count'? (found: "),
        ("count", {"n": "many"}, "error: /count: n: must be a whole number (got 'many')"),
        ("count", {"m": "3"}, "error: /count: m: unknown option (count takes n)"),
        ("count", {"private": "maybe"}, "error: /count: private: must be true or false"),
        (None, {"n": "3"}, "error: --option needs --workflow NAME"),
        ("autointel", {"depth": "abyssal"}, "error: /autointel: depth: must be one of quick,"),
    ],
)
async def test_a_workflow_or_option_that_cannot_be_played_is_one_line_and_exit_2(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    workflow: str | None,
    options: dict[str, str],
    line: str,
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    out = io.StringIO()
    status = await run_demo(
        load_config(project, env={}),
        project,
        keep_running=False,
        ttl_s=5,
        out=out,
        workflow=workflow,
        options=options,
    )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err
    assert out.getvalue() == ""  # nothing started, nothing told
    assert demo_folders(tmp_path) == []


async def test_a_workflow_turned_off_in_the_config_is_refused(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.model_validate(
        {"workflows": {"dirs": [str(project.parent / "workflows")], "count": {"enabled": False}}}
    )
    status = await run_demo(settings, None, keep_running=False, ttl_s=5, workflow="count")
    assert status == 2
    assert capsys.readouterr().err.strip() == (
        "error: workflow 'count' is turned off in the config (workflows.count.enabled: false)"
    )


def test_the_command_line_exits_2_with_one_line(project: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [*NOTIFIER_DEMO, "--config", str(project), "--workflow", "count", "--option", "n=x"],
        cwd=tmp_path,
        env=child_env(TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: /count: n: must be a whole number (got 'x')\n"
    assert done.stdout == ""
    assert demo_folders(tmp_path) == []
