"""Discord's message size rules, reported as 400/50035 error trees.

Discord rejects the whole message when any limit is exceeded; bots that
build long result lists hit these in production, so the emulator enforces
them with the same error shape (``errors.embeds.0.fields.3.value``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors


@dataclass(frozen=True)
class MessageLimits:
    """Per-message limits; defaults are Discord's."""

    content: int = 2000
    embeds: int = 10
    embed_title: int = 256
    embed_description: int = 4096
    embed_fields: int = 25
    field_name: int = 256
    field_value: int = 1024
    footer_text: int = 2048
    author_name: int = 256
    embed_total: int = 6000
    nonce: int = 25


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _embed_errors(embed: Mapping[str, Any], limits: MessageLimits) -> tuple[dict[str, Any], int]:
    """Errors of one embed and the characters it counts towards the 6000 total."""
    found: dict[str, Any] = {}
    title = _text(embed.get("title"))
    description = _text(embed.get("description"))
    footer = _text((embed.get("footer") or {}).get("text"))
    author = _text((embed.get("author") or {}).get("name"))
    total = len(title) + len(description) + len(footer) + len(author)
    if len(title) > limits.embed_title:
        found["title"] = errors.too_long(limits.embed_title)
    if len(description) > limits.embed_description:
        found["description"] = errors.too_long(limits.embed_description)
    if len(footer) > limits.footer_text:
        found["footer"] = {"text": errors.too_long(limits.footer_text)}
    if len(author) > limits.author_name:
        found["author"] = {"name": errors.too_long(limits.author_name)}
    fields = embed.get("fields") or []
    if len(fields) > limits.embed_fields:
        found["fields"] = errors.too_long(limits.embed_fields)
    field_errors: dict[str, Any] = {}
    for index, item in enumerate(fields):
        name = _text(item.get("name"))
        value = _text(item.get("value"))
        total += len(name) + len(value)
        problems: dict[str, Any] = {}
        if not name:
            problems["name"] = errors.required()
        elif len(name) > limits.field_name:
            problems["name"] = errors.too_long(limits.field_name)
        if not value:
            problems["value"] = errors.required()
        elif len(value) > limits.field_value:
            problems["value"] = errors.too_long(limits.field_value)
        if problems:
            field_errors[str(index)] = problems
    if field_errors and "fields" not in found:
        found["fields"] = field_errors
    return found, total


def message_errors(payload: Mapping[str, Any], limits: MessageLimits) -> dict[str, Any]:
    """All limit violations of a message payload; empty when it is acceptable."""
    found: dict[str, Any] = {}
    content = payload.get("content")
    if isinstance(content, str) and len(content) > limits.content:
        found["content"] = errors.too_long(limits.content)
    nonce = payload.get("nonce")
    if isinstance(nonce, str) and len(nonce) > limits.nonce:
        found["nonce"] = errors.too_long(limits.nonce)
    embeds = payload.get("embeds") or []
    if len(embeds) > limits.embeds:
        found["embeds"] = errors.too_long(limits.embeds)
        return found
    embed_errors: dict[str, Any] = {}
    total = 0
    for index, embed in enumerate(embeds):
        problems, size = _embed_errors(embed, limits)
        total += size
        if problems:
            embed_errors[str(index)] = problems
    if total > limits.embed_total:
        embed_errors["_errors"] = [
            {
                "code": "MAX_EMBED_SIZE_EXCEEDED",
                "message": f"Embed size exceeds maximum size of {limits.embed_total}",
            }
        ]
    if embed_errors:
        found["embeds"] = embed_errors
    return found


def has_body(payload: Mapping[str, Any], file_count: int) -> bool:
    """Discord refuses messages with nothing to show (50006)."""
    return bool(
        payload.get("content")
        or payload.get("embeds")
        or payload.get("components")
        or payload.get("sticker_ids")
        or payload.get("poll")
        or file_count
    )
