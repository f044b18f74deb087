"""Every fenced block and command in README.md is exercised by a test, and the small ones are
exercised here: the set-up scripts (the systemd unit: tests/operating/test_systemd_unit.py).

The inventory below names the test of each block; a new block in the README without an entry
(or an entry whose block is gone) fails `test_every_readme_block_has_a_test`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess

from .readme import ROOT, block, blocks, section
from .support import script_env

# (language, start of the first line) -> where it is exercised
INVENTORY: dict[tuple[str, str], str] = {
    ("sh", "scripts/run-bot"): "here (run-tests, run-bot --help) and tests/demo/test_demo.py",
    ("text", "alice runs /autointel"): "tests/demo/test_demo.py (the sample is a real run)",
    ("sh", "DISCORD_TOKEN="): "tests/docs/test_readme_bot.py",
    ("", "/autointel ──► defer"): "a diagram; the ladder itself: tests/bot/test_ladder.py",
    ("python", "# plugins/ntfy_topic.py"): "tests/docs/test_readme_plugin.py",
    ("yaml", "notifiers:"): "tests/docs/test_readme_plugin.py",
    ("python", "# workflows/count.py"): "tests/docs/test_readme_workflow.py",
    ("python", "from notifier import InvalidWorkflowOptions"): "tests/docs/test_readme_workflow.py",
    ("toml", '[project.entry-points."notifier.workflows"]'): "tests/docs/test_readme_workflow.py",
    ("sh", "pip install nextcord-notifier"): "tests/packaging/test_wheel_install.py",
    ("python", 'bot.load_extension("notifier.ext"'): "tests/docs/test_readme_extension.py",
    ("ini", "[Unit]"): "tests/operating/test_systemd_unit.py (and systemd-analyze verify)",
    ("tree", "notifier/"): "tests/docs/test_readme_layout.py (the package as built)",
    ("floors", "__main__"): "tests/docs/test_readme_layout.py (the import-linter contract)",
    ("text", "Discord (gateway + REST"): "a diagram; the roles: tests/distributed/",
    ("python", "from standardwebhooks import Webhook"): "tests/docs/test_readme_notify.py",
    ("bash", "pip install 'nextcord-notifier[postgres]'"): (
        "here (each command parses), tests/distributed/ (runs them) and tests/store/test_cli_db.py"
    ),
}


def test_every_readme_block_has_a_test() -> None:
    found = blocks()
    unclaimed = [
        (b.lang, b.first_line, b.line)
        for b in found
        if not any(b.lang == lang and b.first_line.strip().startswith(s) for lang, s in INVENTORY)
    ]
    assert unclaimed == [], "README blocks no test exercises: add a test and an INVENTORY entry"
    for lang, start in INVENTORY:
        matching = [b for b in found if b.lang == lang and b.first_line.strip().startswith(start)]
        assert len(matching) == 1, f"INVENTORY entry {(lang, start)} matches {len(matching)}"


def setup_commands() -> list[str]:
    lines = block("sh", "scripts/run-bot").text.splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.strip()]


def test_the_two_set_up_commands_are_the_scripts() -> None:
    assert setup_commands() == ["scripts/run-bot", "scripts/run-tests"]
    # The bot's environment without the dev extras, the tests' with them (scripts/venv.sh).
    kinds = {"scripts/run-bot": "bot", "scripts/run-tests": "dev"}
    for command in setup_commands():
        script = ROOT / command
        assert script.is_file() and os.access(script, os.X_OK), command
        text = script.read_text(encoding="utf-8")
        assert text.startswith("#!/usr/bin/env bash\n")
        assert 'source "$(dirname "$0")/venv.sh"' in text
        assert f"\nensure_venv {kinds[command]}\n" in text
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_run_tests_runs_pytest_and_ci_runs_it() -> None:
    """Not run for real here (it would run this test again): its last line hands its arguments
    to pytest, and `--collect-only` through it lists this very test without running it."""
    text = (ROOT / "scripts" / "run-tests").read_text(encoding="utf-8")
    assert text.rstrip().splitlines()[-1] == 'exec "$venv_dir/bin/python" -m pytest "$@"'
    here = "tests/docs/test_readme_blocks.py"
    done = subprocess.run(
        [str(ROOT / "scripts" / "run-tests"), "--collect-only", "-q", here],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{here}::test_run_tests_runs_pytest_and_ci_runs_it" in done.stdout
    # README: `scripts/run-tests -m "not demo_story"` leaves out the demo's end-to-end runs.
    text = " ".join(section("Set up (two commands)").split())
    (skip,) = re.findall(r"`(scripts/run-tests -m [^`]+)`", text)
    argv = [*shlex.split(skip), "--collect-only", "-q", "tests/demo"]
    done = subprocess.run(
        [str(ROOT / argv[0]), *argv[1:]],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tests/demo/test_demo_parts.py::" in done.stdout
    assert "tests/demo/test_demo.py::" not in done.stdout
    assert "2 deselected" in done.stdout
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().splitlines()[-1] == "scripts/run-tests"


def test_run_bot_takes_the_options_the_readme_names() -> None:
    text = section("Set up (two commands)")
    paragraph = text[text.index("`scripts/run-bot` passes") :].split("\n\n")[0]
    named = set(re.findall(r"`(--[a-z-]+)", paragraph))
    assert named == {
        "--config",
        "--demo",
        "--keep-running",
        "--verbose",
        "--demo-ttl",
        "--workflow",
        "--option",
    }
    done = subprocess.run(
        [str(ROOT / "scripts" / "run-bot"), "--help"],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    offered = set(re.findall(r"(--[a-z-]+)", done.stdout))
    assert named <= offered


def test_the_several_machines_commands_are_the_cli_s() -> None:
    from notifier.cli.main import build_parser

    lines = block("bash", "pip install 'nextcord-notifier[postgres]'").text.splitlines()
    commands = [line.split("#", 1)[0].strip() for line in lines if line.startswith("notifier ")]
    assert [[w for w in c.split()[1:] if w in ("db", "run", "worker")] for c in commands] == [
        ["db"],
        ["run"],
        ["worker"],
    ]
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        assert str(args.config) == "config.yaml"
    assert parser.parse_args(["run", "--role", "gateway"]).role == "gateway"
