"""Gateway events that mirror message changes (MESSAGE_CREATE/UPDATE/DELETE).

Discord tells the bot about its own messages too; dispatching them keeps
nextcord's message cache and ``wait_for("message")`` working. Ephemeral
messages are never broadcast, and intents are honoured.
"""

from __future__ import annotations

from .gateway import DIRECT_MESSAGES, GUILD_MESSAGES
from .messaging import MessageEvent
from .model import Message
from .state import EmulatorState

_EVENT_NAMES = {"create": "MESSAGE_CREATE", "edit": "MESSAGE_UPDATE", "delete": "MESSAGE_DELETE"}


def install_message_events(state: EmulatorState) -> None:
    """Forward message lifecycle events of ``state`` to the gateway."""

    def on_message(event: MessageEvent, message: Message) -> None:
        if message.ephemeral or message.loading or not state.gateway.sessions:
            return
        intents = GUILD_MESSAGES if message.guild_id is not None else DIRECT_MESSAGES
        if event == "delete":
            data = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
        else:
            data = state.message_json(message)
        state.spawn(state.gateway.dispatch(_EVENT_NAMES[event], data, intents=intents))

    state.messages.listeners.append(on_message)
