"""Typed interaction options built from a registered command's schema.

A test says ``options={"count": 3, "who": "bob"}``; Discord would send each
option with the type its schema declares (and resolved users/channels/
roles/attachments), and nextcord converts values based on those types, so
the schema -- not the Python value -- decides the wire format. Mistakes a
real Discord client would prevent (unknown option, missing required
option, value outside ``choices``) raise ``ValueError`` in the test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import payloads
from .model import ApplicationCommand, Attachment, Channel, JsonObject, Role, User
from .world import World

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
USER = 6
CHANNEL = 7
ROLE = 8
MENTIONABLE = 9
NUMBER = 10
ATTACHMENT = 11


@dataclass(frozen=True)
class AttachmentOption:
    """Value for an ATTACHMENT option: the file the user picked."""

    filename: str
    content: bytes
    content_type: str | None = None


class OptionBuilder:
    """Builds ``data.options`` and ``data.resolved`` for one interaction."""

    def __init__(self, world: World, base_url: str, guild_id: int | None, channel_id: int):
        self._world = world
        self._base_url = base_url
        self._guild_id = guild_id
        self._channel_id = channel_id
        self.resolved: dict[str, dict[str, JsonObject]] = {}

    def build(
        self,
        command: ApplicationCommand,
        values: Mapping[str, object],
        *,
        subcommand: str | None = None,
        focused: str | None = None,
    ) -> list[JsonObject]:
        """The ``options`` array (subcommand wrappers included)."""
        path, schema = _descend(command, subcommand)
        leaf = self._leaf_options(command.name, schema, values, focused)
        for node in reversed(path):
            leaf = [{"type": node["type"], "name": node["name"], "options": leaf}]
        return leaf

    def _leaf_options(
        self,
        command_name: str,
        schema: list[JsonObject],
        values: Mapping[str, object],
        focused: str | None,
    ) -> list[JsonObject]:
        by_name = {str(o["name"]): o for o in schema}
        unknown = set(values) - set(by_name)
        if unknown:
            raise ValueError(
                f"/{command_name} has no option(s) {sorted(unknown)}; known: {sorted(by_name)}"
            )
        if focused is not None and focused not in by_name:
            raise ValueError(f"/{command_name} has no option {focused!r} to focus")
        if focused is None:
            missing = [n for n, o in by_name.items() if o.get("required") and n not in values]
            if missing:
                raise ValueError(f"/{command_name} requires option(s) {missing}")
        built: list[JsonObject] = []
        for name, option in by_name.items():
            if name == focused:
                raw = values.get(name, "")
                built.append({"type": option["type"], "name": name, "value": raw, "focused": True})
            elif name in values:
                value = self._convert(option, values[name])
                built.append({"type": option["type"], "name": name, "value": value})
        return built

    def _convert(self, option: JsonObject, value: object) -> Any:
        kind = int(option["type"])
        converted: Any
        if kind == STRING:
            converted = str(value)
        elif kind == INTEGER:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"option {option['name']!r} needs an integer, got {value!r}")
            converted = int(value)
        elif kind == NUMBER:
            if not isinstance(value, int | float | str):
                raise ValueError(f"option {option['name']!r} needs a number, got {value!r}")
            converted = float(value)
        elif kind == BOOLEAN:
            converted = bool(value)
        elif kind == USER:
            converted = self._resolve_user(value)
        elif kind == CHANNEL:
            converted = self._resolve_channel(value)
        elif kind == ROLE:
            converted = self._resolve_role(value)
        elif kind == MENTIONABLE:
            converted = (
                self._resolve_role(value) if isinstance(value, Role) else self._resolve_user(value)
            )
        elif kind == ATTACHMENT:
            converted = self._resolve_attachment(value)
        else:
            converted = value
        choices = option.get("choices")
        if choices and converted not in [c.get("value") for c in choices]:
            raise ValueError(
                f"option {option['name']!r} must be one of "
                f"{[c.get('value') for c in choices]}, got {converted!r}"
            )
        return converted

    def _put(self, kind: str, key: int, data: JsonObject) -> str:
        self.resolved.setdefault(kind, {})[str(key)] = data
        return str(key)

    def _resolve_user(self, value: object) -> str:
        if not isinstance(value, User | int | str):
            raise ValueError(f"cannot use {value!r} as a user")
        user = self._world.resolve_user(value)
        if self._guild_id is not None:
            member = self._world.guild(self._guild_id).members.get(user.id)
            if member is not None:
                data = payloads.member(self._world, member, with_user=False)
                data["permissions"] = str(
                    self._world.member_permissions(self._world.guild(self._guild_id), user.id)
                )
                self._put("members", user.id, data)
        return self._put("users", user.id, payloads.user(user))

    def _resolve_channel(self, value: object) -> str:
        if not isinstance(value, Channel | int | str):
            raise ValueError(f"cannot use {value!r} as a channel")
        channel = self._world.resolve_channel(value)
        data = payloads.channel(self._world, channel)
        data["permissions"] = str(self._world.channel_permissions(channel, self._world.bot.id))
        return self._put("channels", channel.id, data)

    def _resolve_role(self, value: object) -> str:
        if self._guild_id is None:
            raise ValueError("role options need a guild")
        roles = self._world.guild(self._guild_id).roles
        role: Role | None
        if isinstance(value, Role):
            role = value
        elif isinstance(value, int):
            role = roles.get(value)
        else:
            role = next((r for r in roles.values() if r.name == value), None)
        if role is None:
            raise ValueError(f"no role {value!r} in the guild")
        return self._put("roles", role.id, payloads.role(role))

    def _resolve_attachment(self, value: object) -> str:
        if not isinstance(value, AttachmentOption):
            raise ValueError("ATTACHMENT options take an AttachmentOption")
        attachment = Attachment(
            id=self._world.ids.next(),
            filename=value.filename,
            size=len(value.content),
            content=value.content,
            content_type=value.content_type,
        )
        self._world.attachments[attachment.id] = attachment
        data = payloads.attachment(self._base_url, self._channel_id, attachment)
        return self._put("attachments", attachment.id, data)


def _descend(
    command: ApplicationCommand, subcommand: str | None
) -> tuple[list[JsonObject], list[JsonObject]]:
    """Follow ``"group sub"`` through the schema; returns the path and leaf options."""
    path: list[JsonObject] = []
    options = command.options
    for part in (subcommand or "").split():
        match = next(
            (
                o
                for o in options
                if o.get("name") == part and o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ),
            None,
        )
        if match is None:
            names = [o.get("name") for o in options if o.get("type") in (1, 2)]
            raise ValueError(f"/{command.name} has no subcommand {part!r}; available: {names}")
        path.append(match)
        options = list(match.get("options") or [])
    if path and path[-1].get("type") == SUB_COMMAND_GROUP:
        raise ValueError(f"{subcommand!r} is a subcommand group; name one of its subcommands")
    if any(o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options):
        names = [o.get("name") for o in options]
        raise ValueError(f"/{command.name} needs subcommand= one of {names}")
    return path, options
