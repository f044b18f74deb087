"""Building the interactions a user would cause: slash commands, autocomplete,
button presses, select menus and modal submissions.

Commands are looked up among those the bot registered (guild scope first,
then global) so the interaction carries the id nextcord associated; a
component interaction is only possible on a message that really has that
component, as in the Discord client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from .model import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    Channel,
    InteractionRecord,
    JsonObject,
    Message,
    User,
)
from .options import OptionBuilder
from .state import EmulatorState


def command_interaction(
    state: EmulatorState,
    *,
    name: str,
    options: Mapping[str, object],
    user: User,
    channel: Channel,
    subcommand: str | None,
    focused: str | None = None,
    locale: str = "en-US",
) -> InteractionRecord:
    """A slash command (or, with ``focused``, an autocomplete) interaction."""
    command = state.commands.named(name, channel.guild_id)
    if command is None:
        known = sorted({c.name for c in state.world.commands.values()})
        raise LookupError(f"no registered command /{name}; registered: {known}")
    builder = OptionBuilder(state.world, state.base_url, channel.guild_id, channel.id)
    data: JsonObject = {
        "id": str(command.id),
        "name": command.name,
        "type": command.type,
        "options": builder.build(command, options, subcommand=subcommand, focused=focused),
    }
    if builder.resolved:
        data["resolved"] = builder.resolved
    if command.guild_id is not None:
        data["guild_id"] = str(command.guild_id)
    kind = AUTOCOMPLETE if focused is not None else APPLICATION_COMMAND
    return state.interactions.create(
        kind=kind, user=user, channel=channel, data=data, locale=locale
    )


def _walk(components: Sequence[JsonObject]) -> Iterator[JsonObject]:
    for component in components:
        yield component
        yield from _walk(component.get("components") or [])


def find_component(message: Message, custom_id: str) -> JsonObject:
    """The component with ``custom_id`` on ``message``; ``LookupError`` otherwise."""
    for component in _walk(message.components):
        if component.get("custom_id") == custom_id:
            return component
    ids = [c.get("custom_id") for c in _walk(message.components) if c.get("custom_id")]
    raise LookupError(f"message {message.id} has no component {custom_id!r}; it has {ids}")


def component_interaction(
    state: EmulatorState,
    *,
    message: Message,
    custom_id: str,
    user: User,
    values: Sequence[str] | None = None,
) -> InteractionRecord:
    """A button press (or select-menu choice when ``values`` is given)."""
    if message.deleted:
        raise LookupError(f"message {message.id} was deleted")
    component = find_component(message, custom_id)
    data: JsonObject = {"custom_id": custom_id, "component_type": component.get("type", 2)}
    if values is not None:
        data["values"] = list(values)
    return state.interactions.create(
        kind=MESSAGE_COMPONENT,
        user=user,
        channel=state.world.channel(message.channel_id),
        data=data,
        source_message=message,
    )


def modal_interaction(
    state: EmulatorState,
    *,
    modal: JsonObject,
    values: Mapping[str, str],
    user: User,
    channel: Channel,
) -> InteractionRecord:
    """Submitting a modal the bot opened, with text-input values by custom id."""
    inputs = [c for c in _walk(modal.get("components") or []) if c.get("type") == 4]
    known = {str(c.get("custom_id")) for c in inputs}
    unknown = set(values) - known
    if unknown:
        raise LookupError(f"modal has no text input(s) {sorted(unknown)}; it has {sorted(known)}")
    rows = [
        {
            "type": 1,
            "components": [
                {"type": 4, "custom_id": c["custom_id"], "value": values.get(c["custom_id"], "")}
            ],
        }
        for c in inputs
    ]
    data: JsonObject = {"custom_id": modal.get("custom_id"), "components": rows}
    return state.interactions.create(kind=MODAL_SUBMIT, user=user, channel=channel, data=data)
