"""Creating, editing and deleting messages, with Discord's validation.

Channel posts, webhook executions and interaction responses all go through
here so the limits (content/embeds 50035, empty 50006, attachments 413),
edit-history recording and change notifications behave identically.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Sequence
from typing import Any, Literal

from . import errors, limits
from .bodies import UploadedFile
from .clock import Clock
from .config import EmulatorConfig
from .model import EPHEMERAL, LOADING, Attachment, Author, Channel, Message
from .snowflake import utcnow
from .waiting import ChangeFeed
from .world import World

SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15
CHANNEL_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
INTERACTION_FLAGS = CHANNEL_FLAGS | EPHEMERAL

MessageEvent = Literal["create", "edit", "delete"]
MessageListener = Callable[[MessageEvent, Message], None]


def _allowed_mentions(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The request's ``allowed_mentions`` as sent (a misspelt key, such as Apprise's
    ``allow_mentions``, is not it: Discord ignores it)."""
    value = payload.get("allowed_mentions")
    return dict(value) if isinstance(value, dict) else None


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class MessageService:
    """Message lifecycle shared by every route that posts or edits messages."""

    def __init__(
        self, world: World, config: EmulatorConfig, clock: Clock, feed: ChangeFeed
    ) -> None:
        self._world = world
        self._config = config
        self._clock = clock
        self._feed = feed
        self._nonces: dict[tuple[int, int, str], tuple[int, float]] = {}
        self.listeners: list[MessageListener] = []

    # -- validation -----------------------------------------------------
    def check_files(self, files: Sequence[UploadedFile]) -> None:
        """Reject any file above the per-file limit like Discord (413/40005)."""
        limit = self._config.attachment_size_limit
        if any(len(f.content) > limit for f in files):
            raise errors.entity_too_large()

    def validate(self, payload: dict[str, Any], *, root: Sequence[str] = ()) -> None:
        """Raise 50035 with the error tree nested under ``root`` (e.g. ``data``)."""
        found = limits.message_errors(payload, self._config.message_limits)
        if found:
            raise errors.invalid_form_body(errors.nest(list(root), found) if root else found)

    # -- nonce ----------------------------------------------------------
    def find_nonce(self, channel_id: int, author_id: int, nonce: str | int) -> Message | None:
        """The message an ``enforce_nonce`` repeat must return, if still remembered."""
        entry = self._nonces.get((channel_id, author_id, str(nonce)))
        if entry is None:
            return None
        message_id, at = entry
        if self._clock.now() - at > self._config.nonce_window_s:
            return None
        return self._world.messages.get(message_id)

    # -- lifecycle ------------------------------------------------------
    def create(
        self,
        *,
        channel: Channel,
        payload: dict[str, Any],
        files: Sequence[UploadedFile],
        author: Author,
        allowed_flags: int = CHANNEL_FLAGS,
        extra_flags: int = 0,
        root: Sequence[str] = (),
        interaction_id: int | None = None,
        webhook_id: int | None = None,
        application_id: int | None = None,
        message_type: int = 0,
        allow_empty: bool = False,
    ) -> Message:
        """Validate and store a new message."""
        self.check_files(files)
        self.validate(payload, root=root)
        if not allow_empty and not limits.has_body(payload, len(files)):
            raise errors.empty_message()
        nonce = payload.get("nonce")
        message = Message(
            id=self._world.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=str(payload.get("content") or ""),
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            attachments=self._attachments(payload, files),
            flags=(_as_int(payload.get("flags")) & allowed_flags) | extra_flags,
            tts=bool(payload.get("tts", False)),
            nonce=nonce if isinstance(nonce, str | int) else None,
            interaction_id=interaction_id,
            webhook_id=webhook_id,
            application_id=application_id,
            message_type=message_type,
            allowed_mentions=_allowed_mentions(payload),
        )
        self._world.add_message(message)
        if message.nonce is not None:
            key = (channel.id, author.id, str(message.nonce))
            self._nonces[key] = (message.id, self._clock.now())
        self._emit("create", message)
        return message

    def edit(
        self,
        message: Message,
        payload: dict[str, Any],
        files: Sequence[UploadedFile],
        *,
        root: Sequence[str] = (),
        allowed_flags: int = SUPPRESS_EMBEDS,
    ) -> Message:
        """Apply the fields present in ``payload``; the old state goes to ``history``."""
        if message.deleted:
            raise errors.unknown_message()
        self.check_files(files)
        self.validate(payload, root=root)
        content = str(payload.get("content") or "") if "content" in payload else message.content
        embeds = list(payload.get("embeds") or []) if "embeds" in payload else message.embeds
        components = (
            list(payload.get("components") or []) if "components" in payload else message.components
        )
        attachments = self._edited_attachments(message, payload, files)
        if not (content or embeds or components or attachments):
            raise errors.empty_message()
        was_placeholder = message.loading
        message.history.append(message.snapshot())
        message.content = content
        message.embeds = embeds
        message.components = components
        message.attachments = attachments
        message.allowed_mentions = _allowed_mentions(payload)
        kept = message.flags & ~(allowed_flags | LOADING)
        if "flags" in payload:
            message.flags = kept | (_as_int(payload.get("flags")) & allowed_flags)
        else:
            message.flags = kept | (message.flags & allowed_flags)
        # Filling a deferred "thinking" placeholder is not shown as an edit.
        message.edited_at = message.edited_at if was_placeholder else utcnow()
        self._emit("edit", message)
        return message

    def fill_placeholder(
        self, message: Message, payload: dict[str, Any], files: Sequence[UploadedFile]
    ) -> Message:
        """Replace a deferred "thinking" message with real content (keeps its ephemerality)."""
        return self.edit(message, payload, files, allowed_flags=SUPPRESS_EMBEDS)

    def delete(self, message: Message) -> None:
        if message.deleted:
            raise errors.unknown_message()
        message.deleted = True
        self._emit("delete", message)

    # -- helpers --------------------------------------------------------
    def _emit(self, event: MessageEvent, message: Message) -> None:
        for listener in list(self.listeners):
            listener(event, message)
        self._feed.notify()

    def _attachments(
        self, payload: dict[str, Any], files: Sequence[UploadedFile]
    ) -> list[Attachment]:
        described = {
            str(item.get("id")): item
            for item in payload.get("attachments") or []
            if isinstance(item, dict)
        }
        result: list[Attachment] = []
        for position, upload in enumerate(files):
            index = upload.index if upload.index is not None else position
            meta = described.get(str(index), {})
            filename = str(meta.get("filename") or upload.filename)
            content_type = upload.content_type
            if not content_type or content_type == "application/octet-stream":
                content_type = mimetypes.guess_type(filename)[0] or content_type
            attachment = Attachment(
                id=self._world.ids.next(),
                filename=filename,
                size=len(upload.content),
                content=upload.content,
                content_type=content_type,
                description=meta.get("description"),
            )
            self._world.attachments[attachment.id] = attachment
            result.append(attachment)
        return result

    def _edited_attachments(
        self, message: Message, payload: dict[str, Any], files: Sequence[UploadedFile]
    ) -> list[Attachment]:
        new = self._attachments(payload, files)
        if "attachments" not in payload:
            return [*message.attachments, *new]
        listed = {str(item.get("id")) for item in payload.get("attachments") or []}
        kept = [a for a in message.attachments if str(a.id) in listed]
        return [*kept, *new]
