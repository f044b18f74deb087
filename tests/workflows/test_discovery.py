"""Finding workflows in the operator's folders and the `notifier.workflows` entry points: what is
found, and every mistake reported naming the file (and line) or the config key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from notifier.config import Settings
from notifier.workflows import (
    WorkflowError,
    WorkflowSpec,
    bind_workflows,
    discover_workflows,
    load_workflows,
)
from notifier.workflows.autointel import AUTOINTEL

COUNT = """
from notifier import workflow, Context


@workflow(description="Count slowly", estimate_s=1200)
async def count(ctx: Context, n: int = 10, private: bool = False) -> dict:
    return {"summary": f"counted to {n}"}
"""

GREET = """
from typing import Annotated, Literal

from notifier import workflow, Context


@workflow(description="Say hello")
async def greet(ctx: Context, who: Annotated[str, "Whom to greet"]) -> dict:
    return {"summary": f"hello {who}"}


@workflow(name="wave", description="Wave")
async def wave_hand(ctx: Context, hand: Literal["left", "right"] = "left") -> dict:
    return {"summary": f"waved the {hand} hand"}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def settings(*dirs: Path, **workflows: Any) -> Settings:
    return Settings.model_validate({"workflows": {"dirs": [str(d) for d in dirs], **workflows}})


def test_workflows_come_from_the_folders_and_the_entry_points(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    count = write(folder, "count.py", COUNT)
    greet = write(folder, "greet.py", GREET)
    write(folder, "_helpers.py", "raise RuntimeError('a helper is never loaded on its own')\n")
    write(folder, "notes.txt", "not python")

    found = discover_workflows(settings(folder, tmp_path / "absent"))

    assert found.problems == ()
    assert sorted(found.workflows) == ["autointel", "count", "greet", "wave"]
    assert found.workflows["autointel"] is AUTOINTEL
    assert found.sources["autointel"].startswith(
        "entry point 'autointel' (notifier.workflows.autointel:AUTOINTEL)"
    )
    assert found.sources["count"] == f"{count}:4"  # the decorator's line
    assert found.sources["wave"] == f"{greet}:11"
    assert [o.name for o in found.workflows["count"].options] == ["n"]


def test_relative_folders_are_read_against_the_config_files_folder(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "flows", "count.py", COUNT)
    relative = Settings.model_validate({"workflows": {"dirs": ["flows"]}})
    found = discover_workflows(relative, base_dir=tmp_path / "conf", entry_points=False)
    assert sorted(found.workflows) == ["count"]


def test_files_of_one_name_in_two_folders_do_not_shadow_each_other(tmp_path: Path) -> None:
    write(tmp_path / "a", "tools.py", COUNT)
    write(tmp_path / "b", "tools.py", GREET)
    found = discover_workflows(settings(tmp_path / "a", tmp_path / "b"), entry_points=False)
    assert found.problems == ()
    assert sorted(found.workflows) == ["count", "greet", "wave"]


def test_a_workflow_imported_into_a_file_is_not_counted_twice(tmp_path: Path) -> None:
    write(
        tmp_path / "w",
        "mine.py",
        "from notifier.workflows.autointel import AUTOINTEL\n" + COUNT,
    )
    found = discover_workflows(settings(tmp_path / "w"))
    assert found.problems == ()
    assert sorted(found.workflows) == ["autointel", "count"]


BROKEN = [
    ("syntax.py", "def broken(:\n    pass\n", 1, "SyntaxError: "),
    (
        "raises.py",
        "import os\n\nraise RuntimeError('cannot start: ' + 'no key')\n",
        3,
        "failed to import: RuntimeError: cannot start: no key",
    ),
    (
        "missing.py",
        "from notifier import workflow, Context\nimport not_installed_anywhere\n",
        2,
        "failed to import: ModuleNotFoundError: No module named 'not_installed_anywhere'",
    ),
    (
        "annotation.py",
        "from datetime import datetime\nfrom notifier import workflow, Context\n\n\n"
        '@workflow(description="When")\n'
        "async def when(ctx: Context, at: datetime) -> dict:\n    return {}\n",
        5,
        "workflow 'when': parameter 'at' has the annotation datetime, which Discord has no "
        "option type for",
    ),
    ("empty.py", "X = 1\n", None, "defines no workflow"),
]


@pytest.mark.parametrize(("name", "text", "line", "words"), BROKEN, ids=[row[0] for row in BROKEN])
def test_a_broken_file_is_a_problem_naming_the_file_and_line(
    tmp_path: Path, name: str, text: str, line: int | None, words: str
) -> None:
    folder = tmp_path / "workflows"
    write(folder, "count.py", COUNT)
    path = write(folder, name, text)

    found = discover_workflows(settings(folder), entry_points=False)

    assert sorted(found.workflows) == ["count"]  # the good file is not held back by the bad one
    (problem,) = found.problems
    assert (problem.source, problem.line) == (str(path), line)
    assert words in problem.message
    where = f"{path}:{line}: " if line else f"{path}: "
    assert str(problem).startswith(where)
    assert "\n" not in str(problem)


def test_two_workflows_with_one_name_are_a_problem_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path / "a", "count.py", COUNT)
    second = write(tmp_path / "b", "again.py", COUNT)
    takeover = write(
        tmp_path / "b",
        "crawl.py",
        "from notifier import workflow, Context\n\n\n"
        '@workflow(description="Mine")\n'
        "async def autointel(ctx: Context) -> dict:\n    return {}\n",
    )

    found = discover_workflows(settings(tmp_path / "a", tmp_path / "b"))

    messages = sorted(str(p) for p in found.problems)
    assert messages == sorted(
        [
            f"{second}:4: workflow name 'count' is already taken by {first}:4",
            f"{takeover}:4: workflow name 'autointel' is already taken by entry point "
            "'autointel' (notifier.workflows.autointel:AUTOINTEL)",
        ]
    )
    assert found.workflows["autointel"] is AUTOINTEL


def test_a_name_the_bot_uses_for_its_own_commands_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w",
        "results.py",
        "from notifier import workflow, Context\n\n\n"
        '@workflow(description="Mine")\n'
        "async def results(ctx: Context) -> dict:\n    return {}\n",
    )
    (problem,) = discover_workflows(settings(tmp_path / "w"), entry_points=False).problems
    assert str(problem).startswith(
        f"{path}:4: workflow name 'results' is one of the bot's own commands"
    )


def test_a_workflow_the_config_names_must_exist(tmp_path: Path) -> None:
    write(tmp_path / "w", "count.py", COUNT)
    found = discover_workflows(settings(tmp_path / "w", cuont={"enabled": False}))
    (problem,) = found.problems
    assert (problem.field, problem.source) == ("workflows.cuont", "")
    assert str(problem) == (
        "workflows.cuont: no workflow is named 'cuont', did you mean 'count'? "
        "(found: autointel, count)"
    )


def test_a_disabled_workflow_is_found_but_not_offered(tmp_path: Path) -> None:
    write(tmp_path / "w", "count.py", COUNT)
    configured = settings(tmp_path / "w", autointel={"enabled": False})
    found = discover_workflows(configured)
    assert found.problems == ()
    assert sorted(found.workflows) == ["autointel", "count"]
    assert sorted(found.enabled(configured)) == ["count"]
    assert sorted(load_workflows(configured)) == ["count"]


def test_the_start_stops_on_any_problem_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    write(folder, "count.py", COUNT)
    bad = write(folder, "bad.py", "def broken(:\n")
    write(folder, "empty.py", "X = 1\n")

    with pytest.raises(WorkflowError) as caught:
        load_workflows(settings(folder))

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}:1: SyntaxError: ")
    assert message.endswith(
        "(and 1 more workflow problem: `notifier config check` lists every one)"
    )
    assert len(caught.value.problems) == 2


async def test_binding_builds_class_workflows_once_and_a_failure_closes_what_was_built(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "w"
    write(
        folder,
        "pools.py",
        """
        from notifier import workflow, Context

        CLOSED = []


        class Good:
            def __init__(self, settings):
                self.settings = settings

            async def run(self, ctx: Context) -> dict:
                return {}

            async def close(self) -> None:
                CLOSED.append("good")


        class Bad:
            def __init__(self, settings):
                raise RuntimeError("no pool for you")

            async def run(self, ctx: Context) -> dict:
                return {}


        GOOD = workflow(name="good", description="d")(Good)
        BAD = workflow(name="bad", description="d")(Bad)
        """,
    )
    configured = settings(folder)
    found = load_workflows(configured, entry_points=False)
    closed = found["good"].target.run.__globals__["CLOSED"]

    specs = await bind_workflows({"good": found["good"]}, configured)
    assert isinstance(specs["good"], WorkflowSpec) and specs["good"].close is not None

    with pytest.raises(WorkflowError) as caught:
        await bind_workflows(found, configured)
    assert "workflow 'bad' could not be set up: RuntimeError: no pool for you" in str(caught)
    assert str(caught.value).startswith(f"{folder / 'pools.py'}:")
    assert closed == ["good"]  # the one built before the failure was closed
