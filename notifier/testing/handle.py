"""Test-side view of one interaction: what the bot answered and when.

Wraps the server record with read-only properties and ``wait_*`` helpers
that wake on every emulator change, so tests await outcomes instead of
sleeping.
"""

from __future__ import annotations

from collections.abc import Callable

from .model import InteractionRecord, JsonObject, Message
from .state import EmulatorState

MessagePredicate = Callable[[Message], bool]


class InteractionHandle:
    """An interaction triggered by a test (slash command, button, autocomplete...)."""

    def __init__(self, state: EmulatorState, record: InteractionRecord) -> None:
        self._state = state
        self.record = record

    def __repr__(self) -> str:
        return (
            f"<InteractionHandle id={self.id} name={self.name!r} "
            f"response_type={self.response_type} messages={len(self.messages)}>"
        )

    # -- identity -------------------------------------------------------
    @property
    def id(self) -> int:
        return self.record.id

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def name(self) -> str | None:
        """Command name, or ``None`` for component/modal interactions."""
        value = self.record.data.get("name")
        return str(value) if value is not None else None

    @property
    def channel_id(self) -> int:
        return self.record.channel_id

    @property
    def user_id(self) -> int:
        return self.record.user_id

    # -- outcome --------------------------------------------------------
    @property
    def response_type(self) -> int | None:
        """Callback type the bot used (4, 5, 6, 7, 8, 9) or ``None``."""
        return self.record.response_type

    @property
    def acknowledged(self) -> bool:
        return self.record.acknowledged

    @property
    def deferred(self) -> bool:
        return self.record.response_type in (5, 6)

    @property
    def acknowledged_at(self) -> float | None:
        """Emulator-clock time of the callback."""
        return self.record.acknowledged_at

    @property
    def response_delay_s(self) -> float | None:
        """Seconds between the interaction and its initial response."""
        if self.record.acknowledged_at is None:
            return None
        return self.record.acknowledged_at - self.record.created_at

    @property
    def ephemeral(self) -> bool:
        return self.record.ephemeral

    @property
    def original(self) -> Message | None:
        """The initial response message (the "thinking" placeholder while deferred)."""
        return self._state.world.messages.get(self.record.original_message_id or 0)

    @property
    def followups(self) -> list[Message]:
        return [self._state.world.messages[m] for m in self.record.followup_ids]

    @property
    def messages(self) -> list[Message]:
        """Original then followups, as the user sees them (deleted ones flagged).

        For a button press answered with UPDATE_MESSAGE the original is the
        message the button was on.
        """
        original = self.original
        return ([original] if original is not None else []) + self.followups

    @property
    def autocomplete_choices(self) -> list[JsonObject] | None:
        return self.record.autocomplete_choices

    @property
    def modal(self) -> JsonObject | None:
        return self.record.modal

    @property
    def expired(self) -> bool:
        """Whether the token has outlived ``interaction_ttl_s``."""
        return self._state.interactions.expired(self.record)

    def expire(self) -> None:
        """Age this interaction past its token lifetime (and initial-response deadline)."""
        self.record.created_at -= self._state.config.interaction_ttl_s + 1.0
        self._state.feed.notify()

    # -- waiting --------------------------------------------------------
    def _timeout(self, timeout_s: float | None) -> float:
        return self._state.config.default_timeout_s if timeout_s is None else timeout_s

    async def wait_until(
        self,
        predicate: Callable[[InteractionHandle], bool],
        *,
        timeout_s: float | None = None,
        description: str = "a condition",
    ) -> None:
        """Wait until ``predicate(self)`` holds."""
        await self._state.feed.wait_until(
            lambda: predicate(self), self._timeout(timeout_s), f"{description} on {self!r}"
        )

    async def wait_for_response(self, *, timeout_s: float | None = None) -> int:
        """Wait for the initial response; returns its callback type."""
        return await self._state.feed.wait_for(
            lambda: self.record.response_type,
            self._timeout(timeout_s),
            f"the initial response to {self!r}",
        )

    async def wait_for_message(
        self, predicate: MessagePredicate | None = None, *, timeout_s: float | None = None
    ) -> Message:
        """First visible (non-placeholder, not deleted) message matching ``predicate``."""

        def check() -> Message | None:
            for message in self.messages:
                if message.loading or message.deleted:
                    continue
                if predicate is None or predicate(message):
                    return message
            return None

        return await self._state.feed.wait_for(
            check, self._timeout(timeout_s), f"a matching message on {self!r}"
        )

    async def wait_for_messages(
        self, count: int, *, timeout_s: float | None = None
    ) -> list[Message]:
        """Wait until at least ``count`` visible messages exist; returns them."""

        def check() -> list[Message] | None:
            visible = [m for m in self.messages if not m.loading and not m.deleted]
            return visible if len(visible) >= count else None

        return await self._state.feed.wait_for(
            check, self._timeout(timeout_s), f"{count} messages on {self!r}"
        )

    async def wait_for_original(
        self, predicate: MessagePredicate | None = None, *, timeout_s: float | None = None
    ) -> Message:
        """Wait until the original response has real content matching ``predicate``."""

        def check() -> Message | None:
            original = self.original
            if original is None or original.loading or original.deleted:
                return None
            return original if predicate is None or predicate(original) else None

        return await self._state.feed.wait_for(
            check, self._timeout(timeout_s), f"the original response of {self!r}"
        )

    async def wait_for_autocomplete(self, *, timeout_s: float | None = None) -> list[JsonObject]:
        """Wait for an autocomplete result; returns the choices."""
        return await self._state.feed.wait_for(
            lambda: self.record.autocomplete_choices,
            self._timeout(timeout_s),
            f"autocomplete choices on {self!r}",
        )
