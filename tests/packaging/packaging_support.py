"""What the packaging tests share: the project's root, the installed distribution's requirement
graph, and an environment for the `notifier` command and the scripts."""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import sys
from pathlib import Path
from typing import Final

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from notifier.testing.processes import child_env

ROOT: Final = Path(__file__).resolve().parents[2]
DISTRIBUTION: Final = "nextcord-notifier"
# What only the tests and the checks need; the bot's own environment must not hold them.
DEV_TOOLS: Final = frozenset({"pytest", "mypy", "ruff", "hypothesis"})


def dependency_closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `pip install name[extras]` brings in, from the installed metadata
    (canonical names, `name` included): requirements whose markers hold here, followed down."""
    walked: set[tuple[str, frozenset[str]]] = set()
    pending: list[tuple[str, frozenset[str]]] = [(name, extras)]
    while pending:
        current, wanted = pending.pop()
        key = canonicalize_name(current)
        if (key, wanted) in walked:
            continue
        walked.add((key, wanted))
        for text in importlib.metadata.requires(current) or []:
            requirement = Requirement(text)
            marker = requirement.marker
            applies = marker is None or any(
                marker.evaluate({"extra": extra}) for extra in (wanted or {""})
            )
            if applies:
                pending.append((requirement.name, frozenset(requirement.extras)))
    return {key for key, _ in walked}


def scripts_env(**extra: str) -> dict[str, str]:
    """The environment for `scripts/...`: this one without Discord settings, the scripts' venv
    being the one running the tests (installed already, so nothing is built)."""
    env = child_env(**extra)
    env.setdefault("NOTIFIER_VENV", sys.prefix)
    return env


def console_script(name: str = "notifier") -> Path:
    """The console script of this environment (the editable install made it)."""
    path = Path(sys.executable).parent / name
    assert path.is_file() and os.access(path, os.X_OK), f"{path}: pip install -e . makes it"
    return path


def readme_install_commands() -> dict[str, tuple[dict[str, str], list[str]]]:
    """README "Installing it": each line of its `sh` block as (environment assignments, argv),
    by the command's verb (`install`, `init`, `config`, `demo`, `run`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text[text.index("\n## Installing it\n") :].split("\n## ", 2)[1]
    fenced = body[body.index("```sh\n") + len("```sh\n") :]
    commands: dict[str, tuple[dict[str, str], list[str]]] = {}
    for line in fenced[: fenced.index("```")].splitlines():
        words = shlex.split(line, comments=True)
        assignments = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            name, _, value = words.pop(0).partition("=")
            assignments[name] = value
        if words:
            commands[words[1]] = (assignments, words)
    return commands
