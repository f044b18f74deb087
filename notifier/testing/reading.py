"""What people saw: the text of a message, every message the emulator holds, every version of one.

Tests assert on what a person reads, not on how the bot built it: `"Steered result" in
text_of(message)` holds whether the title went into the content, an embed or an attached file.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .model import Message, MessageVersion

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

__all__ = ["every_message", "message_texts", "text_of"]


def text_of(message: Message | MessageVersion) -> str:
    """Everything a person reads in a message as it is now: the content, the embeds (as JSON, so
    titles, descriptions, fields and footers all count) and each attachment's name and text."""
    parts = [message.content, json.dumps(message.embeds, ensure_ascii=False)]
    for attachment in message.attachments:
        parts += [attachment.filename, attachment.content.decode("utf-8", "replace")]
    return "\n".join(parts)


def message_texts(message: Message) -> list[str]:
    """`text_of` every version the message has had, oldest first: what anyone could have seen
    at some moment, for checks such as "no secret was ever shown"."""
    return [text_of(version) for version in message.versions]


def every_message(emulator: DiscordEmulator) -> list[Message]:
    """Every message the emulator holds, deleted ones included: guild channels (webhook posts
    among them), DMs and interaction responses (ephemeral ones too), each once."""
    seen: dict[int, Message] = {}
    for channel in emulator.channels.values():
        for message in emulator.channel_messages(channel):
            seen[message.id] = message
    for user in emulator.users:
        for message in emulator.dm_messages(user):
            seen[message.id] = message
    for handle in emulator.interactions:
        for message in handle.messages:
            seen[message.id] = message
    return list(seen.values())
