"""README "How the code is laid out": the tree is the package as built, the floors are the
contract import-linter checks."""

from __future__ import annotations

import re
import tomllib

from .readme import ROOT, block

PACKAGE = ROOT / "notifier"


def _tree_names() -> set[str]:
    """Every file or folder the tree names under notifier/ (first column; the kernel's line names
    six modules; deeper-indented lines continue a description)."""
    names: set[str] = set()
    for line in block("tree", "notifier/").text.splitlines()[1:]:
        if not line.startswith("  ") or line.startswith("   "):
            continue
        words = line.split()
        names.update(words if all(w.endswith(".py") for w in words) else words[:1])
    return names


def test_the_tree_names_every_package_and_module_there_is() -> None:
    built = {
        f"{p.name}/" if p.is_dir() else p.name
        for p in PACKAGE.iterdir()
        if p.name not in {"__init__.py", "__main__.py", "py.typed", "__pycache__"}
    }

    assert _tree_names() == built


def test_the_floors_are_the_contract_import_linter_checks() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in contracts["contracts"] if c["id"] == "floors"]
    floors = [line for line in block("floors", "__main__").text.splitlines() if line]

    *above, kernel = floors
    assert kernel == "kernel"
    kernel_layers = layers[len(above) :]
    assert layers[: len(above)] == above
    kernel_modules = {m + ".py" for layer in kernel_layers for m in re.split(r"[ :|]+", layer)}
    first = block("tree", "notifier/").text.splitlines()[1].split()
    assert kernel_modules == set(first)
