"""Workflows found in a `workflows/` folder become slash commands of the real bot: what Discord
is told (types, choices, required options, `private`), a run with choices whose stored options
are what `/retrieve_results` and the CLI show, a refusal as the private "not started" reply,
`enabled: false`, and a broken workflow file stopping the start in one line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.app import NotifierBot
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, text_of
from notifier.testing.processes import CapturedProcess, child_env
from notifier.testing.project_bot import project_bot, settled_record
from notifier.workflows import WorkflowError
from notifier.workflows.discovery import RESERVED_NAMES

ROOT = Path(__file__).resolve().parents[2]

STRING, INTEGER, BOOLEAN, NUMBER = 3, 4, 5, 10

KINDS = """
import enum
from typing import Annotated, Literal

from notifier import Context, InvalidWorkflowOptions, workflow


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@workflow(description="Every kind of option")
async def kinds(
    ctx: Context,
    name: Annotated[str, "Who to greet"],
    n: Annotated[int, "How many times"] = 3,
    ratio: float = 0.5,
    loud: bool = False,
    speed: Literal["fast", "slow"] = "fast",
    colour: Colour = Colour.RED,
    size: Literal[1, 2, 3] | None = None,
) -> dict:
    ctx.progress(stage="greeting", fraction=0.5, detail=f"greeting {name}")
    return {"summary": f"hello {name}, {n} times, {speed}, {colour.name.lower()}, size {size}"}


@kinds.validator
async def _check(name, n, ratio, loud, speed, colour, size=None):
    if n > 100:
        raise InvalidWorkflowOptions("n", "must be at most 100")
"""


def workflows_folder(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return folder


def overrides(folder: Path, **workflows: Any) -> dict[str, Any]:
    return {"workflows": {"dirs": [str(folder)], **workflows}}


def schema(emulator: DiscordEmulator, name: str) -> list[dict[str, Any]]:
    command = emulator.command_named(name)
    assert command is not None, f"/{name} is not registered"
    return [
        {
            "name": o["name"],
            "type": o["type"],
            "required": bool(o.get("required")),
            "choices": [(c["name"], c["value"]) for c in o.get("choices") or []],
            "description": o["description"],
        }
        for o in command.options
    ]


def option(
    name: str, kind: int, description: str, *, required: bool = False, choices: Any = ()
) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "required": required,
        "choices": list(choices),
        "description": description,
    }


PRIVATE = option("private", BOOLEAN, "Only you see the progress and the result")


async def test_discord_gets_the_options_the_signatures_declare(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    folder = workflows_folder(tmp_path, kinds=KINDS)
    async with project_bot(emulator, tmp_path / "data", overrides(folder)):
        assert emulator.command_named("kinds").payload["description"] == "Every kind of option"
        assert schema(emulator, "kinds") == [
            option("name", STRING, "Who to greet", required=True),
            option("n", INTEGER, "How many times"),
            option("ratio", NUMBER, "a number"),
            option("loud", BOOLEAN, "true or false"),
            option(
                "speed", STRING, "one of fast, slow", choices=[("fast", "fast"), ("slow", "slow")]
            ),
            option(
                "colour", STRING, "one of RED, GREEN", choices=[("RED", "red"), ("GREEN", "green")]
            ),
            option("size", INTEGER, "one of 1, 2, 3", choices=[("1", 1), ("2", 2), ("3", 3)]),
            PRIVATE,
        ]
        # The built-in workflow, found through its entry point, has the command it always had.
        depths = ["quick", "standard", "deep", "comprehensive"]
        assert schema(emulator, "autointel") == [
            option("url", STRING, "The page to analyse (http or https)", required=True),
            option(
                "depth",
                STRING,
                "How many pages of the site to analyse",
                choices=[(d, d) for d in depths],
            ),
            PRIVATE,
        ]


async def test_a_run_with_choices_stores_its_options_as_text_for_every_view(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    folder = workflows_folder(tmp_path, kinds=KINDS)
    async with project_bot(emulator, tmp_path / "data", overrides(folder)) as bot:
        handle = await emulator.trigger_command(
            "kinds", {"name": "ann", "speed": "slow", "colour": "green", "size": 2}, user="alice"
        )
        result = await handle.wait_for_message(
            lambda m: "hello ann, 3 times, slow, green, size 2" in text_of(m), timeout_s=15
        )
        assert not result.ephemeral
        (record,) = await bot.store.search(ResultQuery(command="kinds"))
        stored = {
            "name": "ann",
            "n": "3",
            "ratio": "0.5",
            "loud": "false",
            "speed": "slow",
            "colour": "green",
            "size": "2",
        }
        assert record.options == stored
        assert (await settled_record(bot, record.workflow_id)).delivered_via

        # The operator's CLI shows the same options (reading the store beside the bot).
        config = tmp_path / "cli.yaml"
        config.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path / "data")}}))
        wid = record.workflow_id
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "notifier", "--config", str(config), "results", "show", wid],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr
        assert " ".join(f"{k}={v}" for k, v in sorted(stored.items())) in shown.stdout

        # A private run: the value of `private` is the run's visibility, not an option.
        secret = await emulator.trigger_command(
            "kinds", {"name": "bo", "private": True}, user="bob"
        )
        answer = await secret.wait_for_message(lambda m: "hello bo" in text_of(m), timeout_s=15)
        assert answer.ephemeral
        records = await bot.store.search(ResultQuery(command="kinds"))
        private = next(r for r in records if r.options["name"] == "bo")
        assert private.ephemeral and "private" not in private.options


async def test_a_value_the_workflow_refuses_is_the_private_not_started_reply(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    folder = workflows_folder(tmp_path, kinds=KINDS)
    async with project_bot(emulator, tmp_path / "data", overrides(folder)) as bot:
        handle = await emulator.trigger_command("kinds", {"name": "ann", "n": 500}, user="alice")
        refusal = await handle.wait_for_message(lambda m: "❌" in m.content, timeout_s=15)
        assert refusal.ephemeral
        assert refusal.content == "❌ n: must be at most 100"
        visible = [m for m in handle.messages if not m.deleted and m.id != refusal.id]
        assert visible == [], "the public 'thinking' message stayed behind"
        assert await bot.store.search(ResultQuery()) == []  # nothing started, nothing stored


async def test_a_disabled_workflow_has_no_command(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    folder = workflows_folder(tmp_path, kinds=KINDS)
    settings = overrides(folder, autointel={"enabled": False})
    async with project_bot(emulator, tmp_path / "data", settings) as bot:
        names = {command.name for command in emulator.commands}
        assert "kinds" in names and "autointel" not in names
        # The names discovery keeps from workflows are exactly the bot's own commands.
        assert names - {"kinds"} == RESERVED_NAMES
        assert "autointel" not in bot.workflows
        with pytest.raises(LookupError):
            await emulator.trigger_command("autointel", {"url": "http://x/"}, user="alice")


DUPLICATE = """
from notifier import Context, workflow


@workflow(description="Another kinds")
async def kinds(ctx: Context) -> dict:
    return {}
"""

UNSUPPORTED = """
from datetime import datetime

from notifier import Context, workflow


@workflow(description="When")
async def when(ctx: Context, at: datetime) -> dict:
    return {}
"""

BROKEN: list[tuple[str, dict[str, str], str]] = [
    ("syntax", {"kinds": KINDS, "typo": "def broken(:\n"}, "typo.py:1: SyntaxError: "),
    (
        "unsupported",
        {"kinds": KINDS, "when": UNSUPPORTED},
        "when.py:6: workflow 'when': parameter 'at' has the annotation datetime",
    ),
    (
        "duplicate",
        {"kinds": KINDS, "zz_again": DUPLICATE},
        "zz_again.py:4: workflow name 'kinds' is already taken by ",
    ),
]


@pytest.mark.parametrize(("what", "files", "line"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_workflow_file_stops_the_bot_before_it_is_built(
    tmp_path: Path, what: str, files: dict[str, str], line: str
) -> None:
    from notifier.config import Settings

    folder = workflows_folder(tmp_path, **files)
    with pytest.raises(WorkflowError) as caught:
        NotifierBot(Settings.model_validate(overrides(folder)))
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(folder / line.split(":", 1)[0]))
    assert line.split(".py", 1)[1] in str(caught.value)


async def test_bot_py_with_a_broken_workflow_file_exits_2_naming_the_file_and_line(
    tmp_path: Path,
) -> None:
    folder = workflows_folder(tmp_path, when=UNSUPPORTED)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"discord": {"token": "not-a-real-token"}, "storage": {"path": "data"}})
    )
    async with CapturedProcess.running(
        sys.executable, str(ROOT / "bot.py"), "--config", str(config), env=child_env(), cwd=ROOT
    ) as bot:
        assert await bot.finish() == 2, bot.output()
    errors = [line for line in bot.stderr_text().splitlines() if line.strip()]
    assert errors == [
        f"error: {folder / 'when.py'}:6: workflow 'when': parameter 'at' has the annotation "
        "datetime, which Discord has no option type for (use str, int, float, bool, a Literal of "
        "strings or numbers, or an Enum)"
    ], bot.output()
    assert not (tmp_path / "data").exists()  # stopped before the store was opened
