"""The `notifier` command as an operator meets it: `init` writes a config that loads and never
overwrites one; a usage mistake is one line and exit 2; `scripts/run-bot --config FILE` finds
FILE where it was typed. All run as subprocesses, as a shell would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging_support import ROOT, console_script, scripts_env

from notifier.cli.run import EMPTY_TOKEN
from notifier.config import Settings, load_config
from notifier.testing.processes import child_env

LIMIT_S = 120  # only stops a hung child from hanging the suite


def _notifier(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(console_script()), *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        check=False,
    )


def test_init_writes_a_config_that_loads_into_a_new_folder(tmp_path: Path) -> None:
    folder = tmp_path / "srv" / "notifier"  # not there yet

    done = _notifier("init", str(folder), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    written = folder / "config.yaml"
    assert written.read_bytes() == (ROOT / "config.yaml").read_bytes()
    assert isinstance(load_config(written, env={}), Settings)
    assert f"notifier run --config {written}" in done.stdout


def test_init_refuses_to_overwrite_a_config_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    mine = tmp_path / "config.yaml"
    mine.write_text("runner: {max_concurrent: 3}  # the operator's own\n")

    done = _notifier("init", cwd=tmp_path)  # DIR defaults to the current folder

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"notifier: error: {mine} already exists; it was left as it is "
        "(move it away, or pick another DIR)"
    ]
    assert mine.read_text() == "runner: {max_concurrent: 3}  # the operator's own\n"
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["bogus"], "'bogus'"),
        (["demo", "--option", "depth"], "'depth' is not KEY=VALUE"),
        (["demo", "--option", "n=1", "--option", "n=2"], "'n' is given twice"),
        (["demo", "--demo-ttl", "1"], "between 5 and 3600"),
        (["run", "--token", "abc"], "--token"),
        (["init", "a", "b"], "unrecognized arguments: b"),
    ],
    ids=["unknown-command", "option-without-value", "option-twice", "ttl", "run-flag", "init"],
)
def test_a_usage_mistake_is_one_line_and_exit_2(
    tmp_path: Path, argv: list[str], named: str
) -> None:
    done = _notifier(*argv, cwd=tmp_path)

    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("notifier") and ": error: " in line and named in line, line
    assert done.stdout == ""


def test_python_m_notifier_names_itself_so_in_usage_lines(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "notifier", "demo", "--option", "depth"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.startswith("python -m notifier demo: error: argument --option: 'depth'")


def test_bot_py_usage_mistake_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--option", "no-equals-sign"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        check=False,
    )

    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("bot.py: error: argument --option: 'no-equals-sign'"), line


@pytest.mark.parametrize("form", ["--config NAME", "--config=NAME"])
def test_run_bot_reads_a_relative_config_where_it_was_typed(tmp_path: Path, form: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Read and valid, but no token: bot.py's answer to exactly this file is the one line below.
    (elsewhere / "relative.yaml").write_text('discord: {token: "${DISCORD_TOKEN:-}"}\n')
    args = form.replace("NAME", "relative.yaml").split(" ")

    done = subprocess.run(
        [str(ROOT / "scripts" / "run-bot"), *args],
        cwd=elsewhere,
        env=scripts_env(),
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == f"error: {EMPTY_TOKEN}", done.stderr
