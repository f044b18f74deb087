"""The house's rules, checked: import-linter reads the contracts in pyproject.toml.

One test holds the rules against the tree as it is; the table below proves each rule bites, by
adding one forbidden import to a copy of the package and seeing that contract, by name, break.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = {
    contract["id"]: contract["name"]
    for contract in tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"][
        "importlinter"
    ]["contracts"]
}
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the `notifier` package under `root` (it puts the working folder first on
    the import path, so a copy is checked, not the installed package)."""
    return subprocess.run(
        [sys.executable, "-c", LINT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_rule() -> None:
    done = lint(PROJECT_ROOT)

    assert done.returncode == 0, done.stdout + done.stderr
    for name in CONTRACTS.values():
        assert f"{name} KEPT" in " ".join(done.stdout.split()), name


# (what breaks a rule: the module to change, the line added to it, the contract that must break,
# and the import chain import-linter names)
VIOLATIONS = [
    pytest.param(
        "notifier/runner/progress.py",
        "import nextcord",
        "nextcord-at-the-edge",
        "notifier.runner.progress -> nextcord",
        id="nextcord-in-the-runner",
    ),
    pytest.param(
        "notifier/store/query.py",
        "from notifier import runner",
        "floors",
        "notifier.store.query -> notifier.runner",
        id="a-floor-imports-one-above",
    ),
    pytest.param(
        "notifier/records.py",
        "from notifier.store import query",
        "floors",
        "notifier.records -> notifier.store.query",
        id="the-kernel-imports-a-subsystem",
    ),
    pytest.param(
        "notifier/runner/progress.py",
        "from notifier.runner import runner",
        "no-cycles",
        ".runner -> .progress",
        id="an-import-cycle",
    ),
    pytest.param(
        "notifier/fanout/templates.py",
        "from notifier.store import query",
        "fanout-not-store",
        "notifier.fanout.templates -> notifier.store.query",
        id="fanout-imports-store",
    ),
    pytest.param(
        "notifier/workflows/contract.py",
        "from notifier.discord import codes",
        "workflows-alone",
        "notifier.workflows.contract -> notifier.discord.codes",
        id="workflows-import-discord",
    ),
    pytest.param(
        "notifier/workflows/autointel.py",
        "from notifier.store import query",
        "workflows-alone",
        "notifier.workflows.autointel -> notifier.store.query",
        id="workflows-import-store",
    ),
]


@pytest.mark.parametrize(("module", "line", "contract", "chain"), VIOLATIONS)
def test_a_forbidden_import_breaks_its_rule_by_name(
    tmp_path: Path, module: str, line: str, contract: str, chain: str
) -> None:
    shutil.copytree(
        PROJECT_ROOT / "notifier",
        tmp_path / "notifier",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # added by the test\n")

    done = lint(tmp_path)

    output = " ".join(done.stdout.split())
    assert done.returncode != 0, done.stdout
    assert f"{CONTRACTS[contract]} BROKEN" in output
    assert chain in output


def test_a_package_on_no_floor_is_refused(tmp_path: Path) -> None:
    """A new room must be given its place among the floors before it can be imported."""
    shutil.copytree(
        PROJECT_ROOT / "notifier",
        tmp_path / "notifier",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "notifier" / "attic").mkdir()
    (tmp_path / "notifier" / "attic" / "__init__.py").write_text("")

    done = lint(tmp_path)

    output = " ".join(done.stdout.split())
    assert done.returncode != 0
    assert f"{CONTRACTS['floors']} BROKEN" in output
    assert "The following modules are not listed as layers: - notifier.attic" in output
