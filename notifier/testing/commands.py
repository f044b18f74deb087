"""Application command registry with Discord's upsert and bulk-overwrite rules.

nextcord 3.2 syncs at READY (global) and on each GUILD_CREATE (guild
commands): it GETs the list, DELETEs unknown ones, POSTs (upserts) new or
changed ones and associates the returned ids; interactions must carry those
ids. Upserting an existing name keeps its id, as on Discord. Payloads are
validated like Discord does so a bad command definition fails in tests.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from . import errors
from .model import ApplicationCommand, JsonObject
from .waiting import ChangeFeed
from .world import World

_NAME = re.compile(r"^[-_'\w]{1,32}$")
CHAT_INPUT = 1


def _option_errors(option: JsonObject) -> dict[str, Any]:
    found: dict[str, Any] = {}
    name = option.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or name != name.lower():
        found["name"] = errors.field_error(
            "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
        )
    description = option.get("description")
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        found["description"] = errors.field_error(
            "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    choices = option.get("choices") or []
    if len(choices) > 25:
        found["choices"] = errors.too_long(25)
    nested = _options_errors(option.get("options") or [])
    if nested:
        found["options"] = nested
    return found


def _options_errors(options: Sequence[JsonObject]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if len(options) > 25:
        return errors.too_long(25)
    seen_optional = False
    for index, option in enumerate(options):
        problems = _option_errors(option)
        if option.get("type") not in (1, 2):
            if option.get("required"):
                if seen_optional:
                    problems["required"] = errors.field_error(
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
        if problems:
            found[str(index)] = problems
    return found


def command_errors(payload: JsonObject) -> dict[str, Any]:
    """Validation errors of one command payload (empty when valid)."""
    kind = int(payload.get("type", CHAT_INPUT))
    if kind != CHAT_INPUT:
        name = payload.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            return {"name": errors.too_long(32)}
        return {}
    found = _option_errors(payload)
    return found


class CommandRegistry:
    """Registered commands, global (``guild_id=None``) or per guild."""

    def __init__(self, world: World, feed: ChangeFeed) -> None:
        self._world = world
        self._feed = feed

    def in_scope(self, guild_id: int | None) -> list[ApplicationCommand]:
        return [c for c in self._world.commands.values() if c.guild_id == guild_id]

    def get(self, command_id: int, guild_id: int | None) -> ApplicationCommand:
        command = self._world.commands.get(command_id)
        if command is None or command.guild_id != guild_id:
            raise errors.unknown_command()
        return command

    def named(
        self, name: str, guild_id: int | None = None, kind: int = CHAT_INPUT
    ) -> ApplicationCommand | None:
        """Guild command first (it shadows a global one in that guild), then global."""
        scopes = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self.in_scope(scope):
                if command.name == name and command.type == kind:
                    return command
        return None

    def _validate(self, payload: JsonObject) -> None:
        found = command_errors(payload)
        if found:
            raise errors.invalid_form_body(found)

    def upsert(self, payload: JsonObject, guild_id: int | None) -> tuple[ApplicationCommand, bool]:
        """Create, or update the same-name command keeping its id; True when created."""
        self._validate(payload)
        kind = int(payload.get("type", CHAT_INPUT))
        name = str(payload.get("name"))
        for command in self.in_scope(guild_id):
            if command.name == name and command.type == kind:
                command.payload = dict(payload)
                command.version = self._world.ids.next()
                self._feed.notify()
                return command, False
        command = ApplicationCommand(
            id=self._world.ids.next(),
            application_id=self._world.application_id,
            guild_id=guild_id,
            payload=dict(payload),
            version=self._world.ids.next(),
        )
        self._world.commands[command.id] = command
        self._feed.notify()
        return command, True

    def edit(
        self, command_id: int, guild_id: int | None, changes: JsonObject
    ) -> ApplicationCommand:
        command = self.get(command_id, guild_id)
        merged = {**command.payload, **changes}
        self._validate(merged)
        command.payload = merged
        command.version = self._world.ids.next()
        self._feed.notify()
        return command

    def delete(self, command_id: int, guild_id: int | None) -> None:
        self.get(command_id, guild_id)
        del self._world.commands[command_id]
        self._feed.notify()

    def overwrite(
        self, payloads: Sequence[JsonObject], guild_id: int | None
    ) -> list[ApplicationCommand]:
        """Bulk overwrite: keep ids of same-name commands, delete the rest."""
        keys = [(str(p.get("name")), int(p.get("type", CHAT_INPUT))) for p in payloads]
        if len(set(keys)) != len(keys):
            raise errors.invalid_form_body(
                errors.field_error(
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            )
        for payload in payloads:
            self._validate(payload)
        wanted = set(keys)
        for command in self.in_scope(guild_id):
            if (command.name, command.type) not in wanted:
                del self._world.commands[command.id]
        return [self.upsert(payload, guild_id)[0] for payload in payloads]
