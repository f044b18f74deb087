"""`scripts/run-bot` installs the project without the dev extras, `scripts/run-tests` with them;
each into its own venv, again only when pyproject.toml changed.

The scripts run for real, with NOTIFIER_VENV naming a folder whose `bin/python` writes down every
`-m pip ...` it is given (and does nothing else) and hands any other command to this interpreter:
what the scripts install is then read, not guessed, and nothing is downloaded. Whether the
project's own requirements reach a dev tool is read from the installed metadata.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from packaging_support import DEV_TOOLS, DISTRIBUTION, ROOT, dependency_closure, scripts_env

LIMIT_S = 120  # only stops a hung child from hanging the suite

RECORDING_PYTHON = """\
#!/usr/bin/env bash
if [ "$1" = -m ] && [ "$2" = pip ]; then
    echo "${{*:3}}" >>"$(dirname "$0")/../pip-calls"
    exit 0
fi
exec {python} "$@"
"""


def _recording_venv(folder: Path) -> Path:
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(RECORDING_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    return folder


def _run(script: str, venv: Path, *args: str) -> list[str]:
    """Run scripts/`script` with `venv`; the pip commands it ran (pip's own upgrade left out)."""
    calls = venv / "pip-calls"
    before = calls.read_text().splitlines() if calls.exists() else []
    done = subprocess.run(
        [str(ROOT / "scripts" / script), *args],
        env=scripts_env(NOTIFIER_VENV=str(venv)),
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    after = calls.read_text().splitlines() if calls.exists() else []
    return [c for c in after[len(before) :] if not c.startswith("install --upgrade pip")]


def _installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("install ")]


def _pyproject_hash() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def test_run_bot_installs_the_project_without_the_dev_extras(tmp_path: Path) -> None:
    venv = _recording_venv(tmp_path / "bot-venv")

    calls = _run("run-bot", venv, "--help")

    assert _installs(calls) == [f"install -e {ROOT}"]
    assert (venv / ".installed").read_text().split() == ["bot", _pyproject_hash()]


def test_run_tests_installs_the_dev_extras(tmp_path: Path) -> None:
    venv = _recording_venv(tmp_path / "dev-venv")

    calls = _run("run-tests", venv, "--version")

    assert _installs(calls) == [f"install -e {ROOT}[dev]"]
    assert (venv / ".installed").read_text().split() == ["dev", _pyproject_hash()]


def test_an_environment_is_reinstalled_only_when_pyproject_changes(tmp_path: Path) -> None:
    venv = _recording_venv(tmp_path / "bot-venv")
    _run("run-bot", venv, "--help")

    assert _installs(_run("run-bot", venv, "--help")) == []  # nothing changed
    (venv / ".installed").write_text(f"bot {'0' * 64}\n")  # as if pyproject.toml had changed
    assert _installs(_run("run-bot", venv, "--help")) == [f"install -e {ROOT}"]


def test_the_projects_requirements_reach_no_dev_tool() -> None:
    runtime = dependency_closure(DISTRIBUTION)
    with_dev = dependency_closure(DISTRIBUTION, frozenset({"dev"}))

    assert not runtime & DEV_TOOLS, sorted(runtime & DEV_TOOLS)
    assert with_dev >= DEV_TOOLS  # the dev extras do bring them: this check can see them


@pytest.mark.parametrize("venv_name", [".venv-bot", ".venv"])
def test_the_scripts_default_venvs_are_ignored_by_git(venv_name: str) -> None:
    done = subprocess.run(
        ["git", "check-ignore", "-q", f"{venv_name}/bin/python"],
        cwd=ROOT,
        check=False,
        timeout=LIMIT_S,
    )
    assert done.returncode == 0, f"{venv_name} would show up in `git status`"
