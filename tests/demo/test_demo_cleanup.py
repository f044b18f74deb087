"""The demo leaves nothing behind in the temporary directory: its `notifier-demo-*` folder (the
store, the config it wrote) is removed when it ends, and when SIGINT (Ctrl-C) or SIGTERM stops
it midway. Each run is `bot.py` as a real process with a TMPDIR of its own and the shortest token
lifetime (`--demo-ttl 5`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from notifier.testing import CapturedProcess, child_env

ROOT = Path(__file__).resolve().parents[2]


def _demo(tmpdir: Path) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, str(ROOT / "bot.py"), "--demo", "--demo-ttl", "5"]
    return argv, child_env(TMPDIR=str(tmpdir))


def _left_behind(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir())


async def test_a_finished_demo_removes_its_temporary_folder(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    argv, env = _demo(tmpdir)
    async with CapturedProcess.running(*argv, env=env, cwd=ROOT) as demo:
        # While it runs, its folder is there (the store is in it).
        await demo.wait_until(
            lambda: any(p.name.startswith("notifier-demo-") for p in tmpdir.iterdir()),
            what="the demo's folder",
        )
        assert await demo.finish() == 0, demo.output()[-3000:]
    out = "".join(demo.stdout)
    assert "Summary" in out
    assert "the demo's temporary folder" in out and "is removed" in out
    assert "Traceback" not in demo.output()
    assert _left_behind(tmpdir) == []


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 128 + signal.SIGINT), (signal.SIGTERM, 143)]
)
async def test_a_demo_stopped_midway_removes_its_temporary_folder(
    tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    argv, env = _demo(tmpdir)
    async with CapturedProcess.running(*argv, env=env, cwd=ROOT) as demo:
        # Midway: the workflow is stored and running (its result is not there yet).
        await demo.wait_until(
            lambda: any("stored as running" in line for line in demo.stdout),
            what="the workflow to be running",
        )
        assert any(p.name.startswith("notifier-demo-") for p in tmpdir.iterdir())
        demo.send(signum)
        assert await demo.finish() == status, demo.output()[-3000:]
    out = "".join(demo.stdout)
    assert f"{signum.name} received: stopping" in out
    assert "result persisted" not in out  # it really was stopped midway
    assert "Traceback" not in demo.output(), demo.output()[-3000:]
    assert _left_behind(tmpdir) == []
