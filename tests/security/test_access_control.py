"""Access control: a workflow is its owner's, or an admin's of the guild it ran in.

Callers, each asking in the guild's `general` channel unless marked DM:

| caller      | who                                                                | admin? |
|-------------|--------------------------------------------------------------------|--------|
| alice       | owns the workflows under test; also the guild's owner             | yes    |
| alice (DM)  | the owner, asking from her DM with the bot                         | no     |
| bob         | a plain member                                                     | no     |
| carol       | the `admin` role: MANAGE_GUILD, and listed in `admin_role_ids`     | yes    |
| carol (DM)  | the same admin, from a DM (no guild there, so no admin rights)    | no     |
| dave        | `moderator` role: listed in `admin_role_ids`, no permission at all | yes    |
| erin        | `helper` role: MANAGE_MESSAGES only, not listed                    | no     |
| frank       | `manager` role: MANAGE_GUILD, not listed                           | yes    |
| grace (DM)  | shares no guild with the bot; the bot's operator (`operator_user_ids`) | no  |

`/retrieve_results`, `/workflow status` and `/workflow cancel` on alice's workflow: the owner (from
anywhere) and the guild's admins (from the guild) get it; everyone else gets exactly the answer an
unknown id gets, ephemeral, so a workflow's existence never leaks; an admin's copy of someone
else's result is private. `/results` lists the caller's own workflows only, for admins too, and
its buttons obey only the caller. `/notifier reload` changes the configuration every guild shares:
the bot's operators only (a listed user anywhere; an admin role only in the bot's own guilds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from loguru import logger

from notifier.app import NotifierBot
from notifier.discord.access import NOT_FOUND_TEXT
from notifier.records import WorkflowStatus, new_workflow_id
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, permissions, text_of, wait_until
from notifier.testing.model import Message
from notifier.testing.project_bot import (
    SteeredWorkflow,
    new_record,
    project_bot,
    stored_workflow,
)

from .support import PROJECT_ROOT


@dataclass(frozen=True)
class Caller:
    name: str
    dm: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} (DM)" if self.dm else self.name


CALLERS = [
    Caller("alice"),
    Caller("alice", dm=True),
    Caller("bob"),
    Caller("carol"),
    Caller("carol", dm=True),
    Caller("dave"),
    Caller("erin"),
    Caller("frank"),
    Caller("grace", dm=True),
]
# Who may see and control a workflow alice ran in the guild.
ALICES_WORKFLOW = {"alice", "alice (DM)", "carol", "dave", "frank"}
# Who may reload the notifier of a bot registered in every guild (no `guild_ids`): its operator.
OPERATORS = {"grace (DM)"}


@dataclass
class World:
    emulator: DiscordEmulator
    bot: NotifierBot
    config_path: Path


def _people(emulator: DiscordEmulator) -> list[int]:
    """The callers of the table above; returns the ids of the roles `admin_role_ids` lists."""
    moderator = emulator.add_role("moderator", 0)
    emulator.add_role("helper", permissions.MANAGE_MESSAGES)
    emulator.add_role("manager", permissions.MANAGE_GUILD)
    emulator.add_user("dave", roles=["moderator"])
    emulator.add_user("erin", roles=["helper"])
    emulator.add_user("frank", roles=["manager"])
    emulator.add_user("grace", in_guild=False)
    return [emulator.roles["admin"].id, moderator.id]


@asynccontextmanager
async def _world(
    emulator: DiscordEmulator, tmp_path: Path, discord: dict[str, Any]
) -> AsyncIterator[World]:
    config = {
        "discord": {"token": emulator.bot_token, "api_base": emulator.api_base, **discord},
        "storage": {"path": str(tmp_path / "data")},
        "fanout": {"plugin_dirs": [str(PROJECT_ROOT / "plugins")]},
        "notifiers": [{"name": "ops-dm", "plugin": "dm", "on": ["failed"], "options": {}}],
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    overrides = {"discord": discord}
    async with project_bot(emulator, tmp_path / "data", overrides, config_path=config_path) as bot:
        yield World(emulator, bot, config_path)


@pytest.fixture
async def world(emulator: DiscordEmulator, tmp_path: Path) -> AsyncIterator[World]:
    """The bot registered in every guild; grace is its operator."""
    admin_roles = _people(emulator)
    discord = {"admin_role_ids": admin_roles, "operator_user_ids": [emulator.users["grace"].id]}
    async with _world(emulator, tmp_path, discord) as world:
        yield world


async def ask(
    emulator: DiscordEmulator,
    caller: Caller,
    command: str,
    options: dict[str, Any],
    subcommand: str | None = None,
) -> Message:
    handle = await emulator.trigger_command(
        command, options, user=caller.name, dm=caller.dm, subcommand=subcommand
    )
    return await handle.wait_for_message(timeout_s=10)


def refused_like_unknown(message: Message, unknown: Message) -> bool:
    return (
        message.ephemeral
        and message.content == unknown.content == NOT_FOUND_TEXT
        and message.embeds == unknown.embeds == []
        and message.attachments == []
    )


async def stored_result(world: World, user: str, title: str) -> str:
    result = {"title": title, "summary": "s"}
    return await stored_workflow(world.bot.store, world.emulator, user=user, result=result)


async def running_workflow(world: World, user: str = "alice") -> tuple[SteeredWorkflow, str]:
    emulator, bot = world.emulator, world.bot
    known = {r.workflow_id for r in await bot.store.search(ResultQuery(limit=1000))}
    steered = SteeredWorkflow()
    steered.install(bot)
    await emulator.trigger_command("autointel", {"url": "http://example.test/"}, user=user)
    await steered.started.wait()
    record = await new_record(bot, known)
    return steered, record.workflow_id


# ---------------------------------------------------------------------------------------------


async def test_retrieve_results_gives_the_result_to_its_owner_and_guild_admins_only(
    world: World,
) -> None:
    emulator = world.emulator
    alices = await stored_result(world, "alice", "Alice's findings")
    bobs = await stored_result(world, "bob", "Bob's findings")
    unknown = await ask(
        emulator, Caller("bob"), "retrieve_results", {"workflow_id": new_workflow_id()}
    )
    wrong: list[str] = []
    for workflow_id, title, allowed in [
        (alices, "Alice's findings", ALICES_WORKFLOW),
        (bobs, "Bob's findings", {"bob", "alice", "carol", "dave", "frank"}),
    ]:
        for caller in CALLERS:
            message = await ask(emulator, caller, "retrieve_results", {"workflow_id": workflow_id})
            got = title in text_of(message)
            if caller.label in allowed and not got:
                wrong.append(f"{caller.label} was refused {title!r}: {message.content!r}")
            # The owner's public result is answered as asked; anyone else's copy is private.
            owner = title.startswith(caller.name.capitalize())
            if got and message.ephemeral == owner:
                wrong.append(
                    f"{caller.label} got {title!r} {'privately' if message.ephemeral else 'in public'}"
                )
            if caller.label not in allowed and not refused_like_unknown(message, unknown):
                wrong.append(
                    f"{caller.label} was not refused {title!r}: {text_of(message)[:200]!r}"
                )
            if caller.label not in allowed and workflow_id in text_of(message):
                wrong.append(f"{caller.label} was told the id exists")
    assert wrong == []


async def test_an_admin_gets_a_private_result_privately(world: World) -> None:
    emulator, bot = world.emulator, world.bot
    steered = SteeredWorkflow({"title": "Private findings", "summary": "for alice's eyes"})
    steered.install(bot)
    await emulator.trigger_command(
        "autointel", {"url": "http://example.test/", "private": True}, user="alice"
    )
    await steered.started.wait()
    steered.release.set()
    record = await new_record(bot)

    async def finished() -> bool:
        row = await bot.store.get(record.workflow_id)
        return row is not None and row.status is WorkflowStatus.COMPLETED

    await wait_until(finished)
    message = await ask(
        emulator, Caller("carol"), "retrieve_results", {"workflow_id": record.workflow_id}
    )
    assert "Private findings" in text_of(message)
    assert message.ephemeral
    public = [m for m in emulator.channel_messages() if "Private findings" in text_of(m)]
    assert all(m.ephemeral for m in public)


async def test_results_lists_only_the_callers_own_workflows_even_for_admins(world: World) -> None:
    emulator = world.emulator
    owned = {
        name: {await stored_result(world, name, f"{name}'s") for _ in range(2)}
        for name in ("alice", "bob", "carol")
    }
    every_id = set().union(*owned.values())
    wrong: list[str] = []
    for caller in CALLERS:
        message = await ask(emulator, caller, "results", {})
        shown = text_of(message)
        mine = owned.get(caller.name, set())
        listed = {i for i in every_id if i[:8] in shown}
        if not message.ephemeral:
            wrong.append(f"{caller.label}: /results is not ephemeral")
        if listed != mine:
            wrong.append(
                f"{caller.label} sees {sorted(x[:8] for x in listed)}, owns {sorted(x[:8] for x in mine)}"
            )
    assert wrong == []

    # The page buttons obey only the person whose list it is, admins included.
    for _ in range(10):
        await stored_result(world, "alice", "more")
    page = await ask(emulator, Caller("alice"), "results", {})
    older = next(
        c["custom_id"]
        for row in page.components
        for c in row.get("components", [])
        if c.get("label") == "Older ▶"
    )
    for intruder in ("bob", "carol", "frank"):
        press = await emulator.click_button(page, older, user=intruder)
        refusal = await press.wait_for_message(timeout_s=10)
        assert refusal.ephemeral and "someone else" in refusal.content
    assert "Page 1 of 2" in text_of(emulator.message(page.id))


async def test_workflow_status_shows_a_running_workflow_to_its_owner_and_admins_only(
    world: World,
) -> None:
    emulator = world.emulator
    steered, workflow_id = await running_workflow(world)
    unknown = await ask(
        emulator, Caller("bob"), "workflow", {"workflow_id": new_workflow_id()}, "status"
    )
    wrong: list[str] = []
    for caller in CALLERS:
        message = await ask(emulator, caller, "workflow", {"workflow_id": workflow_id}, "status")
        shown = workflow_id in text_of(message) and "running" in text_of(message)
        if caller.label in ALICES_WORKFLOW and not (shown and message.ephemeral):
            wrong.append(f"{caller.label} was not shown the status: {text_of(message)[:200]!r}")
        if caller.label not in ALICES_WORKFLOW and not refused_like_unknown(message, unknown):
            wrong.append(f"{caller.label} was not refused: {text_of(message)[:200]!r}")
    steered.release.set()
    assert wrong == []


async def test_workflow_cancel_obeys_the_owner_and_admins_only(world: World) -> None:
    emulator, bot = world.emulator, world.bot
    steered, workflow_id = await running_workflow(world)
    unknown = await ask(
        emulator, Caller("bob"), "workflow", {"workflow_id": new_workflow_id()}, "cancel"
    )
    wrong: list[str] = []
    for caller in [c for c in CALLERS if c.label not in ALICES_WORKFLOW]:
        message = await ask(emulator, caller, "workflow", {"workflow_id": workflow_id}, "cancel")
        if not refused_like_unknown(message, unknown):
            wrong.append(f"{caller.label} was not refused: {text_of(message)[:200]!r}")
        if not bot.runner.is_running(workflow_id):
            wrong.append(f"{caller.label} stopped the workflow")
            break
    steered.release.set()
    for caller in [c for c in CALLERS if c.label in ALICES_WORKFLOW]:
        steered, workflow_id = await running_workflow(world)
        message = await ask(emulator, caller, "workflow", {"workflow_id": workflow_id}, "cancel")
        if f"Cancelled workflow `{workflow_id}`" not in message.content or not message.ephemeral:
            wrong.append(f"{caller.label} could not cancel: {text_of(message)[:200]!r}")
        await wait_until(lambda wid=workflow_id: not bot.runner.is_running(wid))
        record = await bot.store.get(workflow_id)
        assert record is not None
        if record.status is not WorkflowStatus.CANCELLED:
            wrong.append(f"{caller.label}: status {record.status}")
    assert wrong == []


async def _reloads(world: World, callers: list[Caller], allowed: set[str]) -> list[str]:
    """Ask each caller to reload; return what went wrong (an answer in public, an operator
    refused, anyone else obeyed). Each reload the bot applies is in its log."""
    reloads: list[str] = []
    sink_id = logger.add(
        lambda line: reloads.append(str(line)),
        filter=lambda r: r["message"].startswith("configuration reloaded from"),
    )
    wrong: list[str] = []
    try:
        for caller in callers:
            before = len(reloads)
            message = await ask(world.emulator, caller, "notifier", {}, "reload")
            if not message.ephemeral:
                wrong.append(f"{caller.label}: the answer is public")
            if caller.label in allowed:
                if "✅ Reloaded. Notifiers: ops-dm" not in message.content or len(reloads) != (
                    before + 1
                ):
                    wrong.append(f"{caller.label} could not reload: {message.content!r}")
            elif "Only the bot's operators" not in message.content or len(reloads) != before:
                wrong.append(f"{caller.label} was not refused: {message.content!r}")
    finally:
        logger.remove(sink_id)
    return wrong


async def test_notifier_reload_is_for_the_bots_operators_only(world: World) -> None:
    """Registered in every guild, the bot has no guild of its own: server admins of whatever
    guild (alice the owner, carol and dave with listed roles, frank with Manage Server) may not
    change its configuration; its operator may, even from a DM."""
    assert await _reloads(world, CALLERS, OPERATORS) == []
    (command,) = [c for c in world.emulator.commands if c.name == "notifier"]
    assert command.payload["default_member_permissions"] == str(permissions.MANAGE_GUILD)


async def test_in_the_bots_own_guild_its_admin_roles_may_reload(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    admin_roles = _people(emulator)
    discord = {
        "guild_ids": [emulator.guild_id],
        "admin_role_ids": admin_roles,
        "operator_user_ids": [emulator.users["bob"].id],
    }
    async with _world(emulator, tmp_path, discord) as world:
        in_guild = [c for c in CALLERS if not c.dm]
        assert await _reloads(world, in_guild, {"bob", "carol", "dave"}) == []
