"""README "Writing your own workflow": the example, copied as written into a `workflows/` folder,
is discovered and becomes a slash command of the real bot (typed options, as Discord gets them),
and runs against the emulator to a delivered result with progress, a timeout warning from its
`estimate_s` and a hand-off; its validator refuses privately; the error line and the entry-point
form the README shows are the ones the code gives and uses."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from notifier.config import Settings
from notifier.records import DeliveryState
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, text_of, wait_until
from notifier.testing.project_bot import project_bot
from notifier.testing.reading import message_texts
from notifier.workflows import WorkflowError, load_workflows
from notifier.workflows.discovery import ENTRY_POINT_GROUP

from .readme import ROOT, Block, blocks, section

SECTION = "Writing your own workflow"


def _blocks(lang: str) -> list[Block]:
    return [b for b in blocks() if b.section == SECTION and b.lang == lang]


def example() -> Block:
    found = [b for b in _blocks("python") if b.first_line == "# workflows/count.py"]
    assert len(found) == 1, "the README shows the workflow file first"
    return found[0]


def validator() -> Block:
    found = [b for b in _blocks("python") if b.first_line.startswith("from notifier import")]
    assert len(found) == 1, "the README shows a validator for the same file"
    return found[0]


def write_example(folder: Path, *, with_validator: bool = True) -> Path:
    """The README's file as a reader would save it: the example, then (same file) the
    validator."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "count.py"
    text = example().text + ("\n\n" + validator().text if with_validator else "")
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_is_ten_lines_and_uses_only_the_author_api() -> None:
    lines = example().text.rstrip("\n").splitlines()
    assert len([line for line in lines if line.strip()]) <= 10  # blank lines are not code
    assert "from notifier import workflow, Context" in lines
    assert not [line for line in lines if "nextcord" in line or "WorkflowSpec" in line]


@pytest.mark.discord_emulator(interaction_ttl_s=3.0)
async def test_the_example_runs_as_a_slash_command_with_progress_a_handoff_and_its_result(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "workflows"
    write_example(folder)
    overrides = {"workflows": {"dirs": [str(folder)]}}
    async with project_bot(emulator, tmp_path / "data", overrides) as bot:
        # `/count [n] [private]`: what Discord is told, read from the signature.
        command = emulator.command_named("count")
        assert command is not None
        assert command.payload["description"] == "Count slowly"
        assert [(o["name"], o["type"], bool(o.get("required"))) for o in command.options] == [
            ("n", 4, False),  # INTEGER, optional: it has a default
            ("private", 5, False),  # BOOLEAN
        ]

        handle = await emulator.trigger_command("count", {"n": 4}, user="alice")
        # estimate_s=1200 is over warnings.threshold (600 s): alice is warned privately.
        warning = await handle.wait_for_message(lambda m: "Long workflow" in text_of(m))
        assert warning.ephemeral and "20m" in text_of(warning)
        handoff = await handle.wait_for_message(
            lambda m: "Still working on `/count`" in m.content, timeout_s=15
        )
        assert not handle.expired, "the hand-off is posted while the token still works"
        assert f"<#{emulator.channel_id}>" in handoff.content
        result = await emulator.wait_for_channel_message(
            predicate=lambda m: "counted to 4" in text_of(m) and m.interaction_id is None,
            timeout_s=20,
        )
        assert f"<@{emulator.users['alice'].id}>" in result.content

        (record,) = await bot.store.search(ResultQuery(command="count"))
        assert record.options == {"n": "4"}
        document = await bot.store.read_result(record.workflow_id)
        assert document["result"] == {"summary": "counted to 4"}
        shown = [
            text
            for message in [*handle.messages, *emulator.channel_messages()]
            for text in message_texts(message)
        ]
        assert any("Stage: **counting** — 1 of 4" in text for text in shown), "no progress"

        async def delivered() -> bool:
            current = await bot.store.get(record.workflow_id)
            return current is not None and current.delivery_state is DeliveryState.DELIVERED

        await wait_until(delivered, what="the /count result marked delivered")
        again = await emulator.trigger_command(
            "retrieve_results", {"workflow_id": record.workflow_id}, user="alice"
        )
        retrieved = await again.wait_for_message(lambda m: bool(m.embeds), timeout_s=15)
        assert "counted to 4" in text_of(retrieved)

        # The validator: refused privately, nothing started.
        refused = await emulator.trigger_command("count", {"n": 5000}, user="bob")
        answer = await refused.wait_for_message(lambda m: "❌" in m.content, timeout_s=15)
        assert answer.ephemeral
        assert answer.content == "❌ n: must be between 1 and 1000"
        assert len(await bot.store.search(ResultQuery(command="count"))) == 1


def test_the_error_line_the_readme_shows_is_what_a_bad_parameter_gives(tmp_path: Path) -> None:
    """The README's example of a start that stops: the example with `n` given a type Discord has
    no option for (line numbers kept)."""
    folder = tmp_path / "workflows"
    path = write_example(folder, with_validator=False)
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            "import asyncio\n", "import asyncio; from datetime import datetime\n", 1
        ).replace("n: int = 10", "when: datetime", 1),
        encoding="utf-8",
    )
    settings = Settings.model_validate({"workflows": {"dirs": [str(folder)]}})
    with pytest.raises(WorkflowError) as caught:
        load_workflows(settings)

    prose = " ".join(section(SECTION).split())
    shown = re.search(r"`error: (workflows/count\.py:\d+: [^`]+)`", prose)
    assert shown is not None, "the README shows the error line"
    assert str(caught.value) == f"{tmp_path}/{shown.group(1)}"


def test_the_entry_point_form_is_the_one_the_project_registers_autointel_with() -> None:
    (block,) = _blocks("toml")
    shown = tomllib.loads(block.text)["project"]["entry-points"]
    own = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    registered = own["project"]["entry-points"]
    assert list(shown) == [ENTRY_POINT_GROUP]
    assert registered[ENTRY_POINT_GROUP] == {"autointel": "notifier.workflows.autointel:AUTOINTEL"}
    for value in shown[ENTRY_POINT_GROUP].values():
        assert re.fullmatch(r"[\w.]+:\w+", value)
